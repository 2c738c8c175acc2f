//! What a process costs, read from /proc (Linux): resident memory, threads,
//! CPU time and TCP connections to a given port (its Kafka connections).

use std::{collections::HashSet, fs};

#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Footprint {
    pub rss_mib: f64,
    pub threads: u64,
    pub connections: usize,
    /// User and system CPU time since the process started.
    pub cpu_seconds: f64,
}

/// Linux reports CPU times in USER_HZ ticks, 100 per second on every
/// architecture it runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// `pid`'s user and system CPU time so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; fields after its ')' are
    // numbered from 3, so utime (14) and stime (15) are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / TICKS_PER_SECOND
}

/// `pid`'s footprint; connections are those whose remote port is `port`,
/// and are not counted without one (reading them costs milliseconds).
pub fn footprint(pid: u32, port: Option<u16>) -> Footprint {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Footprint {
        rss_mib: field("VmRSS:") as f64 / 1024.0,
        threads: field("Threads:"),
        connections: port.map_or(0, |port| connections(pid, port)),
        cpu_seconds: cpu_seconds(pid),
    }
}

fn connections(pid: u32, port: u16) -> usize {
    let sockets: HashSet<u64> = fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| {
            let link = fs::read_link(fd.path()).ok()?;
            let link = link.to_str()?;
            link.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    let tables: String = ["tcp", "tcp6"]
        .iter()
        .filter_map(|table| fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok())
        .collect();
    tables
        .lines()
        .filter(|line| {
            // sl local_address rem_address st ... inode (the tenth field)
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port = fields
                .get(2)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            let established = fields.get(3) == Some(&"01");
            let inode = fields.get(9).and_then(|i| i.parse::<u64>().ok());
            established && remote_port == Some(port) && inode.is_some_and(|i| sockets.contains(&i))
        })
        .count()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        // Burn a little CPU so the count is above zero.
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        let footprint = super::footprint(pid, Some(1));
        assert!(footprint.rss_mib > 0.0);
        assert!(footprint.threads >= 1);
        assert!(footprint.cpu_seconds > 0.0);
    }
}
