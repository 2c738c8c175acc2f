// Ferry's mesh page: reads /resources and /contract every second and
// draws brokers and channels with their triggers and subscriptions (lag,
// delivery rate, last outcome), the sources that feed them and their
// EventTypes; a broker's live events come from /events (server-sent).
"use strict";

const previous = new Map(); // egress key -> {deliveries, at}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

function badge(status) {
  const cls = status.ready === "True" ? "ready" : status.ready === "False" ? "not-ready" : "unknown";
  const text = status.ready === "True" ? "Ready" : status.ready === "False" ? "Not ready" : "Unknown";
  return el("span", { class: "badge " + cls }, text);
}

function key(s) { return `${s.kind} ${s.namespace}/${s.name}`; }

function describeFilter(egress) {
  const parts = [];
  const attrs = egress.filter && egress.filter.attributes;
  if (attrs && Object.keys(attrs).length) {
    parts.push(Object.entries(attrs).map(([k, v]) => `${k}=${v}`).join(", "));
  }
  for (const f of egress.dialectedFilter || []) parts.push(JSON.stringify(f));
  return parts.length ? parts.join("; ") : "everything";
}

function rate(status, now) {
  const id = key(status);
  const seen = previous.get(id);
  previous.set(id, { deliveries: status.deliveries || 0, at: now });
  if (!seen || now <= seen.at) return "–";
  const perSecond = ((status.deliveries || 0) - seen.deliveries) / ((now - seen.at) / 1000);
  return perSecond.toFixed(1) + "/s";
}

function draw(resources, contract) {
  const now = Date.now();
  const byKey = new Map(resources.map((r) => [key(r), r]));
  // Problems first: whatever is not Ready, with its reason.
  const problems = resources.filter((r) => r.ready === "False");
  const list = document.getElementById("problem-list");
  list.replaceChildren(...problems.map((p) =>
    el("li", { class: "problem" }, el("strong", {}, `${p.kind} ${p.namespace}/${p.name}`), ": ",
      el("span", { class: "reason" }, `${p.reason}: ${p.message}`))));
  document.getElementById("problems").hidden = problems.length === 0;

  const cards = [];
  const brokers = [];
  for (const r of resources.filter((r) => ["Broker", "KafkaChannel", "Channel", "KafkaSink"].includes(r.kind))) {
    const entry = (contract.resources || []).find((c) => c.reference &&
      c.reference.namespace === r.namespace && c.reference.name === r.name);
    if (r.kind === "Broker") brokers.push(`${r.namespace}/${r.name}`);
    const card = el("div", { class: "card addressable" + (r.ready === "False" ? " not-ready" : ""),
      "data-name": `${r.namespace}/${r.name}`, "data-kind": r.kind });
    card.append(el("h3", {}, `${r.kind} ${r.namespace}/${r.name} `, badge(r)));
    card.append(el("div", { class: "address" }, r.address || ""));
    if (r.ready === "False") card.append(el("div", { class: "reason" }, `${r.reason}: ${r.message}`));
    // Its triggers or subscriptions, from the contract's egresses.
    const rows = [];
    for (const egress of (entry && entry.egresses) || []) {
      const ref = egress.reference || {};
      const kind = ref.kind || (r.kind === "Broker" ? "Trigger" : "Subscription");
      const status = byKey.get(`${kind} ${ref.namespace}/${ref.name}`) || {};
      const config = egress.egressConfig || entry.egressConfig || {};
      const lag = status.lag ?? 0;
      const last = status.lastDelivery ? `${status.lastDelivery.outcome} ${status.lastDelivery.time.slice(11, 19)}` : "–";
      rows.push(el("tr", { class: "egress", "data-name": ref.name || egress.consumerGroup },
        el("td", {}, ref.name || egress.consumerGroup), el("td", {}, el("code", {}, describeFilter(egress))),
        el("td", { class: "address" }, egress.destination),
        el("td", { class: "lag" + (lag > 0 ? " behind" : "") }, String(lag)),
        el("td", { class: "rate" }, rate({ ...status, kind, namespace: ref.namespace, name: ref.name }, now)),
        el("td", { class: "last" }, last),
        el("td", { class: "address" }, config.deadLetter || "–")));
    }
    if (r.kind === "KafkaSink") {
      const topic = ((entry && entry.topics) || [])[0] || "";
      card.append(el("div", { class: "muted" }, `writes to topic ${topic}`));
    } else if (rows.length) {
      card.append(el("table", {}, el("thead", {}, el("tr", {}, ...["name", "filter", "subscriber", "lag", "rate", "last", "dead letters"].map((h) => el("th", {}, h)))),
        el("tbody", {}, ...rows)));
    } else {
      card.append(el("div", { class: "muted" }, "no triggers or subscriptions"));
    }
    // Sources feeding it, and the EventTypes it carries.
    const feeding = resources.filter((s) => s.sinkUri && r.address && s.sinkUri === r.address);
    if (feeding.length) card.append(el("div", { class: "fed" }, "fed by ", feeding.map((s) => `${s.kind} ${s.name}`).join(", ")));
    const types = resources.filter((e) => e.kind === "EventType" && e.eventType &&
      e.eventType.reference === `${r.kind} ${r.namespace}/${r.name}`);
    if (types.length) {
      card.append(el("div", { class: "event-types" }, "event types: ",
        ...types.map((t) => el("code", { class: "event-type" }, `${t.eventType.type} from ${t.eventType.source} `))));
    }
    cards.push(card);
  }
  document.getElementById("addressables").replaceChildren(...cards);

  const sources = resources.filter((s) => ["PingSource", "ApiServerSource", "ContainerSource", "SinkBinding", "KafkaSource"].includes(s.kind));
  document.querySelector("#sources tbody").replaceChildren(...sources.map((s) =>
    el("tr", { class: "source" + (s.ready === "False" ? " not-ready" : ""), "data-name": s.name },
      el("td", {}, `${s.namespace}/${s.name}`), el("td", {}, s.kind), el("td", { class: "address" }, s.sinkUri || "–"),
      el("td", {}, badge(s), s.ready === "False" ? el("div", { class: "reason" }, s.reason) : ""))));

  const select = document.getElementById("tail-broker");
  const have = [...select.options].map((o) => o.value);
  for (const b of brokers) if (!have.includes(b)) select.append(el("option", { value: b }, b));
  document.getElementById("updated").textContent = "updated " + new Date(now).toLocaleTimeString();
  document.body.dataset.loaded = "true";
}

async function refresh() {
  try {
    const [resources, contract] = await Promise.all([
      fetch("/resources").then((r) => r.json()),
      fetch("/contract").then((r) => r.json()),
    ]);
    draw(resources, contract);
  } catch (error) {
    document.getElementById("updated").textContent = "cannot reach Ferry: " + error;
  }
}

let stream = null;
document.getElementById("tail-broker").addEventListener("change", (event) => {
  if (stream) stream.close();
  const list = document.getElementById("tail");
  list.replaceChildren();
  if (!event.target.value) return;
  stream = new EventSource("/events?broker=" + encodeURIComponent(event.target.value));
  stream.addEventListener("cloudevent", (message) => {
    const e = JSON.parse(message.data);
    list.prepend(el("li", {}, `${e.time || ""} ${e.type} from ${e.source} (${e.id})`));
    while (list.children.length > 50) list.lastChild.remove();
  });
});

refresh();
setInterval(refresh, 1000);
