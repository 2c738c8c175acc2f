//! Events for people to read, in the layout of Knative's event_display.

use std::fmt::Write;

use crate::{Event, DATACONTENTTYPE};

/// Attributes the spec defines; everything else is an extension.
const CONTEXT: [&str; 11] = [
    "specversion",
    "type",
    "source",
    "id",
    "time",
    "subject",
    "datacontenttype",
    "dataschema",
    "schemaurl",
    "datacontentencoding",
    "partitionkey",
];

pub fn display(event: &Event) -> String {
    let mut out = String::from("☁️  cloudevents.Event\nContext Attributes,\n");
    for name in CONTEXT {
        if let Some(value) = event.get(name) {
            let _ = writeln!(out, "  {name}: {value}");
        }
    }
    let mut extensions: Vec<_> = event
        .attributes()
        .filter(|(n, _)| !CONTEXT.contains(n))
        .collect();
    if !extensions.is_empty() {
        extensions.sort_by_key(|(n, _)| *n);
        out.push_str("Extensions,\n");
        for (name, value) in extensions {
            let _ = writeln!(out, "  {name}: {value}");
        }
    }
    if let Some(data) = event.data() {
        out.push_str("Data,\n  ");
        let json = crate::is_json_media_type(event.get_str(DATACONTENTTYPE));
        match std::str::from_utf8(data) {
            Ok(text) if json => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(v) => out.push_str(
                    &serde_json::to_string_pretty(&v)
                        .unwrap_or_else(|_| text.to_owned())
                        .replace('\n', "\n  "),
                ),
                Err(_) => out.push_str(text),
            },
            Ok(text) => out.push_str(text),
            Err(_) => {
                let _ = write!(out, "({} bytes of binary data)", data.len());
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn lays_out_context_extensions_and_data() {
        let mut e = Event::new("1", "/s", "t");
        e.set("zeta", "z".into());
        e.set("alpha", "a".into());
        e.set_data(
            Some("application/json"),
            Some(Bytes::from_static(br#"{"a":1}"#)),
        );
        assert_eq!(
            display(&e),
            "☁️  cloudevents.Event\nContext Attributes,\n  specversion: 1.0\n  type: t\n  source: /s\n  id: 1\n  \
             datacontenttype: application/json\nExtensions,\n  alpha: a\n  zeta: z\nData,\n  {\n    \"a\": 1\n  }\n"
        );
    }
}
