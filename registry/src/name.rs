//! An EventType's name as the reference Kafka broker derives it, so that
//! Ferry and the reference name the same pair alike: `et-<addressable>-`
//! and the hex MD5 of type, source, namespace and addressable name, lower
//! case, cut at 253 characters (a DNS-1123 subdomain's length).

use md5::{Digest, Md5};

const MAX_LENGTH: usize = 253;

pub fn event_type_name(ty: &str, source: &str, namespace: &str, addressable: &str) -> String {
    let mut digest = Md5::new();
    for part in [ty, source, namespace, addressable] {
        digest.update(part.as_bytes());
    }
    let hex: String = digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut name = format!("et-{addressable}-{hex}").to_lowercase();
    if name.len() > MAX_LENGTH {
        let mut end = MAX_LENGTH;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_references_for_known_inputs() {
        // md5("dev.example.orderhttp://shop/orderskafkadefault")
        assert_eq!(
            event_type_name(
                "dev.example.order",
                "http://shop/orders",
                "kafka",
                "default"
            ),
            "et-default-8fb9c450a31802c7ff33f2b902c2e491"
        );
        // The digest is of the name as given; the whole is lowered after.
        assert_eq!(
            event_type_name("T", "S", "ns", "MyBroker"),
            "et-mybroker-e94ba9cfcfc70ded089de28d5606c66e"
        );
    }

    #[test]
    fn long_names_are_cut_at_253_characters() {
        let long = "b".repeat(300);
        let name = event_type_name("t", "s", "ns", &long);
        assert_eq!(name.len(), 253);
        assert!(name.starts_with("et-bbb"));
    }
}
