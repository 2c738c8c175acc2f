//! The six scenarios of BENCHMARKS.md, each measuring Ferry beside its
//! baseline in the same run and adding its table to the suite's output.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use chrono::Timelike;

use ferry_common::shutdown::Shutdown;
use fixedbitset::FixedBitSet;

use crate::{
    baseline,
    event::RunId,
    load::{self, Load, Sent},
    procstat::{self, Footprint},
    report::{Percentiles, Report},
    sink::{new_histogram, Behaviour, SinkHandle},
};

use crate::process::{free_addr, loopback, wait_listening, Process, Sampler};
use crate::suite::{Bench, Order, NAMESPACE, READY_TIMEOUT, SIZE};
use crate::ticks::TickSinkHandle;

impl Bench {
    /// 1. Ingress: the most 1 KiB binary events per second, against a no-op
    ///    HTTP server, the least an HTTP → Kafka gateway does, and a raw
    ///    producer.
    pub(crate) async fn ingress(&mut self) -> anyhow::Result<()> {
        let run = RunId::fresh();
        let sink = SinkHandle::start(loopback(), run, Behaviour::default()).await?;
        self.apply("ingress", 0, Order::Unordered, &sink).await?;
        let header = ingress_header("target", "ratio");
        self.section(
            &format!(
                "1. Ingress: 1 KiB binary events, {} connections, as fast as possible",
                self.options.connections
            ),
            &header,
        );

        let (noop, noop_url) = self.listening_baseline("noop", &[]).await?;
        let sampler = Sampler::start(noop.pid(), self.kafka_port);
        let ceiling = load::run(&self.load(noop_url, None), run).await?;
        let noop_footprint = sampler.finish();
        noop.stop().await;
        self.ingress_row(
            "no-op hyper server (HTTP ceiling)",
            &ceiling,
            noop_footprint,
            None,
        );

        let receiver = self.receiver()?;
        receiver.ready(READY_TIMEOUT).await?;
        let sampler = Sampler::start(receiver.pid(), self.kafka_port);
        let sent = load::run(&self.load(self.broker_url("ingress"), None), run).await?;
        let footprint = sampler.finish();
        receiver.stop().await;
        let ratio = sent.rate() / ceiling.rate();
        self.ingress_row("ferry receiver (acks=all)", &sent, footprint, Some(ratio));

        // The least any HTTP → Kafka ingress does, under the same load: on
        // two cores shared with Tansu and the load generator, this and not
        // the raw producer (which has no HTTP side) bounds the receiver.
        let (gateway, gateway_url) = self.gateway("ingress").await?;
        let sampler = Sampler::start(gateway.pid(), self.kafka_port);
        let through = load::run(&self.load(gateway_url, None), run).await?;
        let gateway_footprint = sampler.finish();
        gateway.stop().await;
        self.ingress_row_with(
            "raw HTTP → Kafka gateway (hyper + rdkafka, acks=all)",
            &through,
            gateway_footprint,
            format!(
                "receiver/gateway {:.2}, CPU {:.2}×",
                sent.rate() / through.rate(),
                cpu_per_event(footprint, sent.accepted_count())
                    / cpu_per_event(gateway_footprint, through.accepted_count())
            ),
        );

        let raw = self
            .raw_producer(&Self::topic("ingress"), &sent, run)
            .await?;
        self.baseline_row(
            &self.raw_producer_label(),
            raw,
            8,
            format!("receiver/raw {:.2}", sent.rate() / raw),
        );
        Ok(())
    }

    /// The raw HTTP → Kafka gateway, writing into `broker`'s topic, once it
    /// listens; and its URL.
    pub(crate) async fn gateway(&self, broker: &str) -> anyhow::Result<(Process, http::Uri)> {
        self.listening_baseline("gateway", &["--topic".into(), Self::topic(broker)])
            .await
    }

    /// `ferry bench <name> --listen ADDR <args>`, once it listens; and its
    /// URL.
    async fn listening_baseline(
        &self,
        name: &str,
        args: &[String],
    ) -> anyhow::Result<(Process, http::Uri)> {
        let addr = free_addr()?;
        let mut all = vec![
            "bench".into(),
            name.into(),
            "--listen".into(),
            addr.to_string(),
        ];
        all.extend_from_slice(args);
        let process = self.spawn_baseline(name, &all)?;
        wait_listening(addr).await?;
        Ok((process, format!("http://{addr}/").parse()?))
    }

    /// The raw producer writing as many records as `sent` got through in
    /// the measurement (10,000 at least) into `topic`: records per second.
    pub(crate) async fn raw_producer(
        &self,
        topic: &str,
        sent: &Sent,
        run: RunId,
    ) -> anyhow::Result<f64> {
        let count = (sent.rate() * self.options.duration.as_secs_f64()).max(10_000.0) as u64;
        baseline::produce(
            &self.options.bootstrap,
            topic,
            run,
            count,
            SIZE,
            self.options.connections,
        )
        .await
    }

    pub(crate) fn raw_producer_label(&self) -> String {
        format!(
            "raw rdkafka producer (acks=all, {} in flight)",
            self.options.connections
        )
    }

    /// A baseline's row of `columns` cells: its label, its rate, empty
    /// cells, and `last`.
    pub(crate) fn baseline_row(&mut self, label: &str, rate: f64, columns: usize, last: String) {
        let mut row = vec![label.to_owned(), format!("{rate:.0}")];
        row.extend(std::iter::repeat_n(String::new(), columns - 3));
        row.push(last);
        self.row(&row);
    }

    fn ingress_row(&mut self, target: &str, sent: &Sent, footprint: Footprint, ratio: Option<f64>) {
        let ratio = ratio.map_or("1.00".into(), |r| format!("{r:.2}"));
        self.ingress_row_with(target, sent, footprint, ratio);
    }

    /// An ingress row whose last cell is `last`.
    pub(crate) fn ingress_row_with(
        &mut self,
        target: &str,
        sent: &Sent,
        footprint: Footprint,
        last: String,
    ) {
        let latency = Percentiles::of(&sent.latency);
        let non_202 = sent.rejected.values().sum::<u64>() + sent.errors;
        self.row(&[
            target.into(),
            format!("{:.0}", sent.rate()),
            format!("{:.2}", latency.p50),
            format!("{:.2}", latency.p99),
            non_202.to_string(),
            format!("{:.1}", footprint.rss_mib),
            per_event_micros(footprint, sent.accepted_count()),
            last,
        ]);
    }

    /// Drains a backlog of `events` through `triggers` triggers: the
    /// dispatcher starts once (its groups' positions are pinned), stops,
    /// the backlog is written, and it starts again.
    async fn drain_backlog(
        &mut self,
        broker: &str,
        triggers: usize,
        events: u64,
        sink: &SinkHandle,
        run: RunId,
    ) -> anyhow::Result<(Report, Footprint, Footprint, Duration)> {
        self.apply(broker, triggers, Order::Unordered, sink).await?;
        let started = Instant::now();
        let dispatcher = self.dispatcher()?;
        dispatcher.ready(READY_TIMEOUT).await?;
        let startup = started.elapsed();
        let idle = procstat::footprint(dispatcher.pid(), Some(self.kafka_port));
        dispatcher.stop().await;
        baseline::produce(
            &self.options.bootstrap,
            &Self::topic(broker),
            run,
            events,
            SIZE,
            1000,
        )
        .await?;
        sink.reset();
        let (report, busy) = self.drain(sink, events, triggers).await?;
        Ok((report, idle, busy, startup))
    }

    /// Starts a dispatcher and lets it deliver a backlog of `events` to
    /// `sink` on `copies` paths: what arrived, and what it cost.
    pub(crate) async fn drain(
        &self,
        sink: &SinkHandle,
        events: u64,
        copies: usize,
    ) -> anyhow::Result<(Report, Footprint)> {
        let dispatcher = self.dispatcher()?;
        self.measure_drain(dispatcher, sink, events, copies).await
    }

    /// Lets `process` deliver a backlog of `events` to `sink` on `copies`
    /// paths, then stops it: what arrived, and what it cost.
    async fn measure_drain(
        &self,
        process: Process,
        sink: &SinkHandle,
        events: u64,
        copies: usize,
    ) -> anyhow::Result<(Report, Footprint)> {
        let sampler = Sampler::start(process.pid(), self.kafka_port);
        let mut accepted = FixedBitSet::with_capacity(events as usize);
        accepted.insert_range(..);
        sink.wait_for(
            &accepted,
            copies,
            Instant::now() + READY_TIMEOUT,
            Duration::from_secs(30),
        )
        .await;
        let busy = sampler.finish();
        process.stop().await;
        let backlog = Sent {
            sent: events,
            accepted,
            rejected: Default::default(),
            errors: 0,
            latency: new_histogram(),
            elapsed: Duration::ZERO,
        };
        Ok((Report::new(&backlog, &sink.received(), copies), busy))
    }

    /// 3. Dispatch: a backlog delivered to a fast sink, against a raw
    ///    consumer posting the same records.
    pub(crate) async fn dispatch(&mut self) -> anyhow::Result<()> {
        let run = RunId::fresh();
        let sink = SinkHandle::start(loopback(), run, Behaviour::default()).await?;
        let events = self.options.backlog;
        // A topic per run: a repeat (`--compare`) would otherwise find the
        // topic longer, which Tansu serves more slowly (see `latency`).
        let broker = format!("dispatch-{:08x}", run.0);
        let (report, _, busy, _) = self.drain_backlog(&broker, 1, events, &sink, run).await?;
        sink.reset();
        // The relay in a process of its own, measured as the dispatcher is.
        let relay = self.spawn_baseline(
            "relay",
            &[
                "bench".into(),
                "relay".into(),
                "--topic".into(),
                Self::topic(&broker),
                "--url".into(),
                sink.url("relay"),
                "--count".into(),
                events.to_string(),
                "--run".into(),
                format!("{:08x}", run.0),
            ],
        )?;
        let (raw_report, raw_busy) = self.measure_drain(relay, &sink, events, 1).await?;
        let raw = raw_report.delivered_rate;
        self.section(
            &format!("3. Dispatch: a backlog of {events} events to a fast sink"),
            &[
                "target",
                "events/s",
                "lost",
                "dup",
                "RSS MiB (peak)",
                "CPU µs/event",
                "ratio",
            ],
        );
        self.row(&[
            "raw consumer posting 100 at once (ceiling)".into(),
            format!("{raw:.0}"),
            raw_report.lost.to_string(),
            raw_report.duplicates.to_string(),
            format!("{:.1}", raw_busy.rss_mib),
            per_event_micros(raw_busy, events),
            "1.00".into(),
        ]);
        self.row(&[
            "ferry dispatcher (unordered, commits)".into(),
            format!("{:.0}", report.delivered_rate),
            report.lost.to_string(),
            report.duplicates.to_string(),
            format!("{:.1}", busy.rss_mib),
            per_event_micros(busy, events),
            format!("{:.2}", report.delivered_rate / raw),
        ]);
        Ok(())
    }

    /// 4. Fan-out: many triggers on one broker.
    pub(crate) async fn fanout(&mut self) -> anyhow::Result<()> {
        self.section(
            "4. Fan-out: N triggers on one broker, a backlog delivered to each",
            &[
                "triggers",
                "events × triggers",
                "start s",
                "deliveries/s",
                "lost",
                "dup",
                "idle MiB",
                "peak MiB",
                "threads",
                "Kafka connections",
            ],
        );
        for triggers in self.options.fanout.clone() {
            let run = RunId::fresh();
            let sink = SinkHandle::start(loopback(), run, Behaviour::default()).await?;
            let events = (self.options.backlog / triggers as u64).max(100);
            // A broker of its own per run: under --compare, the second
            // round on the same Tansu found the first round's trigger
            // groups, and its reader's offset requests failed over and over
            // with a dropped connection (seen at 100 triggers).
            let broker = format!("fanout{triggers}-{:08x}", run.0);
            let (report, idle, busy, startup) = self
                .drain_backlog(&broker, triggers, events, &sink, run)
                .await?;
            self.row(&[
                triggers.to_string(),
                format!("{events} × {triggers}"),
                format!("{:.1}", startup.as_secs_f64()),
                format!("{:.0}", report.delivered_rate),
                report.lost.to_string(),
                report.duplicates.to_string(),
                format!("{:.1}", idle.rss_mib),
                format!("{:.1}", busy.rss_mib),
                busy.threads.to_string(),
                busy.connections.to_string(),
            ]);
        }
        Ok(())
    }

    /// 5. Ordered, ordered by key (100 keys) and unordered delivery to a
    ///    subscriber that takes 10 ms per event.
    pub(crate) async fn ordering(&mut self) -> anyhow::Result<()> {
        self.section(
            "5. Ordered vs ordered-by-key vs unordered: a subscriber taking 10 ms, 500 events/s offered",
            &[
                "delivery",
                "sent",
                "lost",
                "delivered/s",
                "e2e p50 ms",
                "e2e p99 ms",
                "e2e max ms",
            ],
        );
        let orders = [
            ("ordered", Order::Ordered, None),
            ("by-key", Order::ByKey, Some(100)),
            ("unordered", Order::Unordered, None),
        ];
        for (broker, order, keys) in orders {
            let run = RunId::fresh();
            let sink = SinkHandle::start(
                loopback(),
                run,
                Behaviour {
                    delay: Duration::from_millis(10),
                },
            )
            .await?;
            self.apply(broker, 1, order, &sink).await?;
            let (receiver, dispatcher) = (self.receiver()?, self.dispatcher()?);
            receiver.ready(READY_TIMEOUT).await?;
            dispatcher.ready(READY_TIMEOUT).await?;
            self.warm_up(broker, &sink).await?;
            let load = Load {
                keys,
                ..self.load(self.broker_url(broker), Some(500.0))
            };
            let sent = load::run(&load, run).await?;
            sink.wait_for(
                &sent.accepted,
                1,
                Instant::now() + Duration::from_secs(120),
                Duration::from_secs(15),
            )
            .await;
            let report = Report::new(&sent, &sink.received(), 1);
            let label = match keys {
                Some(keys) => format!("ordered-by-key ({keys} keys)"),
                None => broker.to_owned(),
            };
            self.row(&[
                label,
                report.sent.to_string(),
                report.lost.to_string(),
                format!("{:.0}", report.delivered_rate),
                format!("{:.2}", report.end_to_end.p50),
                format!("{:.2}", report.end_to_end.p99),
                format!("{:.2}", report.end_to_end.max),
            ]);
            receiver.stop().await;
            dispatcher.stop().await;
        }
        Ok(())
    }

    /// 6. Soak: 1,000 events/s through a broker with 10 triggers for
    ///    `soak_minutes`, the dispatcher restarted (SIGTERM, as a rolling
    ///    update does) at every minute; memory sampled at each minute.
    pub(crate) async fn soak(&mut self) -> anyhow::Result<()> {
        const TRIGGERS: usize = 10;
        let minutes = self.options.soak_minutes;
        self.section(
            "6. Soak: 1,000 events/s, 10 triggers, the dispatcher restarted every minute",
            &[
                "minute",
                "deliveries so far",
                "receiver MiB",
                "dispatcher MiB",
            ],
        );
        let run = RunId::fresh();
        let sink = SinkHandle::start(loopback(), run, Behaviour::default()).await?;
        self.apply("soak", TRIGGERS, Order::Unordered, &sink)
            .await?;
        let (receiver, mut dispatcher) = (self.receiver()?, self.dispatcher()?);
        receiver.ready(READY_TIMEOUT).await?;
        dispatcher.ready(READY_TIMEOUT).await?;
        self.warm_up("soak", &sink).await?;

        let stop = Shutdown::new();
        let mut load = self.load(self.broker_url("soak"), Some(1000.0));
        load.duration = Duration::from_secs(minutes * 60 + 60);
        let sending = tokio::spawn({
            let stop = stop.clone();
            async move { load::run_until(&load, run, stop).await }
        });
        let started = Instant::now();
        for minute in 1..=minutes {
            // Pacing a benchmark, not waiting for a result.
            tokio::time::sleep_until((started + Duration::from_secs(minute * 60)).into()).await;
            let rss = |pid| procstat::footprint(pid, None).rss_mib;
            let (r, d) = (rss(receiver.pid()), rss(dispatcher.pid()));
            self.row(&[
                minute.to_string(),
                sink.arrivals().to_string(),
                format!("{r:.1}"),
                format!("{d:.1}"),
            ]);
            if minute < minutes {
                dispatcher.stop().await;
                dispatcher = self.dispatcher()?;
            }
        }
        stop.cancel();
        let sent = sending.await??;
        sink.wait_for(
            &sent.accepted,
            TRIGGERS,
            Instant::now() + Duration::from_secs(300),
            Duration::from_secs(60),
        )
        .await;
        let report = Report::new(&sent, &sink.received(), TRIGGERS);
        let duplicates =
            report.duplicates as f64 / (report.accepted * TRIGGERS as u64).max(1) as f64;
        self.section(
            "6. Soak: totals",
            &[
                "sent",
                "accepted",
                "non-202",
                "deliveries",
                "lost",
                "duplicates",
                "duplicate %",
            ],
        );
        self.row(&[
            report.sent.to_string(),
            report.accepted.to_string(),
            (report.sent - report.accepted).to_string(),
            report.received.to_string(),
            report.lost.to_string(),
            report.duplicates.to_string(),
            format!("{:.3}", duplicates * 100.0),
        ]);
        report_lost(&report, run);
        receiver.stop().await;
        dispatcher.stop().await;
        Ok(())
    }
}

/// Names the first lost events, to look for in the topic.
fn report_lost(report: &Report, run: RunId) {
    if report.lost_examples.is_empty() {
        return;
    }
    let examples: Vec<String> = report
        .lost_examples
        .iter()
        .map(|&(seq, paths)| format!("{} ({paths} paths)", run.event_id(seq)))
        .collect();
    eprintln!("bench: lost events: {}", examples.join(", "));
}

/// The columns of an ingress table ([`Bench::ingress_row_with`]'s), with
/// its first and last headings.
pub(crate) fn ingress_header(first: &'static str, last: &'static str) -> [&'static str; 8] {
    [
        first,
        "events/s",
        "p50 ms",
        "p99 ms",
        "non-202",
        "RSS MiB (peak)",
        "CPU µs/event",
        last,
    ]
}

/// What reached `sink` of what was `sent`, once everything accepted did
/// (or 30 s passed, or 10 s passed without an arrival).
pub(crate) async fn received_report(sink: &SinkHandle, sent: &Sent) -> Report {
    sink.wait_for(
        &sent.accepted,
        1,
        Instant::now() + Duration::from_secs(30),
        Duration::from_secs(10),
    )
    .await;
    Report::new(sent, &sink.received(), 1)
}

/// CPU time per event, in microseconds.
pub(crate) fn per_event_micros(footprint: Footprint, events: u64) -> String {
    format!("{:.1}", cpu_per_event(footprint, events) * 1e6)
}

/// CPU seconds per event.
fn cpu_per_event(footprint: Footprint, events: u64) -> f64 {
    footprint.cpu_seconds / events.max(1) as f64
}

impl Bench {
    /// 7. Sources: `--pings` PingSources on a one-second schedule, into
    ///    one broker (a trigger to a sink that times each tick), and
    ///    straight to that sink (the scheduler and its sends alone).
    pub(crate) async fn pings(&mut self) -> anyhow::Result<()> {
        let n = self.options.pings;
        self.section(
            &format!("7. Sources: {n} PingSources, every second"),
            &[
                "path",
                "ticks/s (expected)",
                "sources heard",
                "lateness p50 ms",
                "p99 ms",
                "max ms",
                "controller RSS MiB (peak)",
                "controller CPU µs/tick",
            ],
        );
        let (receiver, dispatcher) = (self.receiver()?, self.dispatcher()?);
        receiver.ready(READY_TIMEOUT).await?;
        dispatcher.ready(READY_TIMEOUT).await?;
        for through_broker in [true, false] {
            let sink = TickSinkHandle::start(loopback()).await?;
            let url = sink.url();
            self.apply_to("pings", 1, Order::Unordered, &|_| url.clone())
                .await?;
            let target = if through_broker {
                "ref:\n      apiVersion: eventing.knative.dev/v1\n      kind: Broker\n      name: pings".to_owned()
            } else {
                format!("uri: {url}")
            };
            let mut yaml = String::new();
            for i in 0..n {
                let _ = write!(
                    yaml,
                    "---\napiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata:\n  name: ping-{i}\n  namespace: {NAMESPACE}\nspec:\n  schedule: \"* * * * * *\"\n  data: tick\n  contentType: text/plain\n  sink:\n    {target}\n"
                );
            }
            let file = self.options.work_dir.join("resources").join("pings.yaml");
            std::fs::write(&file, yaml)?;
            // Warm: a few seconds of ticks along the whole path first.
            let deadline = Instant::now() + READY_TIMEOUT;
            while sink.early() < 3 * n as u64 {
                if Instant::now() >= deadline {
                    bail!("the PingSources' ticks did not arrive (see the work folder's logs)");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let controller = self
                .controller
                .as_ref()
                .context("the controller runs")?
                .pid();
            let seconds = self.options.duration.as_secs().max(1);
            let start = chrono::Utc::now() + chrono::Duration::seconds(1);
            let start = start.with_nanosecond(0).unwrap_or(start);
            let end = start + chrono::Duration::seconds(seconds as i64);
            sink.open_window(start, end);
            let sampler = Sampler::start(controller, self.kafka_port);
            let until_end = (end - chrono::Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(until_end).await;
            let footprint = sampler.finish();
            // The window's last ticks are still on their way.
            tokio::time::sleep(Duration::from_secs(2)).await;
            std::fs::remove_file(&file)?;
            let ticks = sink.ticks();
            let ms = |q: f64| format!("{:.1}", ticks.lateness.value_at_quantile(q) as f64 / 1000.0);
            self.row(&[
                if through_broker {
                    "into one broker"
                } else {
                    "straight to the sink"
                }
                .to_owned(),
                format!("{:.0} ({n})", ticks.arrivals as f64 / seconds as f64),
                ticks.sources.len().to_string(),
                ms(0.5),
                ms(0.99),
                format!("{:.1}", ticks.lateness.max() as f64 / 1000.0),
                format!("{:.1}", footprint.rss_mib),
                per_event_micros(footprint, ticks.arrivals.max(1)),
            ]);
        }
        receiver.stop().await;
        dispatcher.stop().await;
        Ok(())
    }
}
