//! What a process costs, read from /proc (Linux): resident memory, threads
//! and TCP connections to a given port (its Kafka connections).

use std::{collections::HashSet, fs};

#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Footprint {
    pub rss_mib: f64,
    pub threads: u64,
    pub connections: usize,
}

/// `pid`'s footprint; connections are those whose remote port is `port`.
pub fn footprint(pid: u32, port: u16) -> Footprint {
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
        connections: connections(pid, port),
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
