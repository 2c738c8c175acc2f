//! 8. Ingress with EventType autocreate on against off, alternating in one
//!    run: what recording (type, source) pairs costs the request path (a
//!    lookup per event once the pair is known).

use crate::{
    event::RunId,
    load,
    process::{loopback, Sampler},
    sink::{Behaviour, SinkHandle},
    suite::{Bench, Order, READY_TIMEOUT},
};

const ANNOTATION: (&str, &str) = ("ferry.dev/eventtype-auto-create", "enabled");

impl Bench {
    pub(crate) async fn autocreate(&mut self) -> anyhow::Result<()> {
        let run = RunId::fresh();
        let sink = SinkHandle::start(loopback(), run, Behaviour::default()).await?;
        let registry = self.options.work_dir.join("eventtypes");
        let header = crate::scenarios::ingress_header("autocreate", "EventTypes made so far");
        self.section(
            &format!(
                "8. Ingress with EventType autocreate off and on, alternating, {} connections",
                self.options.connections
            ),
            &header,
        );
        let mut rates = [Vec::new(), Vec::new()];
        for round in 0..2 {
            for on in [false, true] {
                let broker = format!("autocreate-{}-{round}", if on { "on" } else { "off" });
                let annotations: &[(&str, &str)] = if on { &[ANNOTATION] } else { &[] };
                self.apply_annotated(&broker, annotations, 0, Order::Unordered, &|t| {
                    sink.url(&format!("t{t}"))
                })
                .await?;
                let extra = if on {
                    vec!["--eventtype-store".into(), registry.display().to_string()]
                } else {
                    Vec::new()
                };
                let receiver = self.receiver_with(&extra)?;
                receiver.ready(READY_TIMEOUT).await?;
                let sampler = Sampler::start(receiver.pid(), self.kafka_port);
                let sent = load::run(&self.load(self.broker_url(&broker), None), run).await?;
                let footprint = sampler.finish();
                receiver.stop().await;
                let made = std::fs::read_dir(&registry)
                    .map(|d| d.filter_map(Result::ok).count())
                    .unwrap_or(0);
                rates[usize::from(on)].push(sent.rate());
                self.ingress_row_with(
                    if on { "on" } else { "off" },
                    &sent,
                    footprint,
                    made.to_string(),
                );
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        self.row(&[
            format!("on/off {:.2}", mean(&rates[1]) / mean(&rates[0])),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
        Ok(())
    }
}
