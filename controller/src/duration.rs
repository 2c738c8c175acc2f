//! ISO-8601 durations as Knative's delivery specs write them (`PT0.2S`,
//! `PT1M30S`, `P1D`). Years and months are refused: their length varies.

use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("'{0}' is not an ISO-8601 duration such as PT0.5S, PT10M or P1DT2H")]
pub struct DurationError(pub String);

pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let error = || DurationError(text.to_owned());
    let rest = text.strip_prefix('P').ok_or_else(error)?;
    if rest.is_empty() {
        return Err(error());
    }
    let (date, time) = match rest.split_once('T') {
        Some((_, "")) => return Err(error()),
        Some((d, t)) => (d, t),
        None => (rest, ""),
    };
    let mut seconds = 0f64;
    for (part, units) in [
        (date, &[('W', 604_800.0), ('D', 86_400.0)][..]),
        (time, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)][..]),
    ] {
        let mut number = String::new();
        let mut next_unit = 0;
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' || c == ',' {
                number.push(if c == ',' { '.' } else { c });
                continue;
            }
            let at = units
                .iter()
                .position(|(u, _)| *u == c)
                .filter(|at| *at >= next_unit)
                .ok_or_else(error)?;
            let value: f64 = number.parse().map_err(|_| error())?;
            seconds += value * units[at].1;
            number.clear();
            next_unit = at + 1;
        }
        if !number.is_empty() {
            return Err(error());
        }
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ms = |text: &str| parse(text).map(|d| d.as_millis());
        assert_eq!(ms("PT0.2S"), Ok(200));
        assert_eq!(ms("PT1S"), Ok(1000));
        assert_eq!(ms("PT1M30S"), Ok(90_000));
        assert_eq!(ms("PT2H"), Ok(7_200_000));
        assert_eq!(ms("P1D"), Ok(86_400_000));
        assert_eq!(ms("P1DT1H"), Ok(90_000_000));
        assert_eq!(ms("P1W"), Ok(604_800_000));
        assert_eq!(ms("PT0,5S"), Ok(500));
        for bad in [
            "", "P", "PT", "1S", "PT1", "P1Y", "P1M", "PT1S1M", "PTS", "PT-1S", "pt1s", "PT1X",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
