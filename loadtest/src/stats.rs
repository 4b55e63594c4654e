//! Process and latency statistics shared by every generator: CPU seconds and resident memory
//! of a process from /proc, percentiles of sorted samples.

/// utime + stime of a process (`self` for this one), in seconds.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// utime + stime, in seconds, of the threads of `pids` whose name starts with `prefix`
/// (None when no pid was given or one is gone). The server's async runtime names its workers
/// and blocking threads `tokio-rt-worker`: HTTP serving and storage reads, apart from
/// GStreamer's encoder threads.
pub fn threads_cpu(pids: &[u32], prefix: &str) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    let mut total = 0.0;
    for pid in pids {
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .flatten()
        {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue; // the thread ended
            };
            total += thread_ticks(&stat, prefix).unwrap_or(0.0) / 100.0;
        }
    }
    Some(total)
}

/// A thread's utime + stime in clock ticks, when its name (in parentheses) starts with `prefix`.
fn thread_ticks(stat: &str, prefix: &str) -> Option<f64> {
    let name = &stat[stat.find('(')? + 1..stat.rfind(')')?];
    if !name.starts_with(prefix) {
        return None;
    }
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    Some(fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?)
}

/// Resident memory of a process in MB.
pub fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The `p` percentile of sorted microsecond samples, in milliseconds.
pub fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// CPU seconds of a set of processes (None when no pid was given or one is gone).
pub fn cpu_of(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| cpu_seconds(&p.to_string())).sum()
}

/// Resident memory of a set of processes, in MB.
pub fn rss_of(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| rss_mb(*p)).sum()
}

/// UDP sockets a set of processes hold: their descriptors whose socket inode is in the
/// kernel's UDP tables (how many ports a media server's sessions take).
pub fn udp_sockets_of(pids: &[u32]) -> Option<usize> {
    if pids.is_empty() {
        return None;
    }
    let mut total = 0;
    for pid in pids {
        let mut inodes = std::collections::HashSet::new();
        for table in ["udp", "udp6"] {
            let text =
                std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
            inodes.extend(
                text.lines()
                    .skip(1)
                    .filter_map(|line| line.split_whitespace().nth(9).map(str::to_owned)),
            );
        }
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            let inode = target
                .strip_prefix("socket:[")
                .and_then(|rest| rest.strip_suffix(']'));
            if inode.is_some_and(|inode| inodes.contains(inode)) {
                total += 1;
            }
        }
    }
    Some(total)
}

/// CPU use over a measurement window: the server's processes and this generator.
pub struct CpuWindow<'a> {
    server_pids: &'a [u32],
    server0: Option<f64>,
    own0: f64,
    t0: std::time::Instant,
}

/// What a [`CpuWindow`] measured.
pub struct CpuUse {
    pub elapsed: f64,
    /// Server CPU seconds per second (None without server pids).
    pub server_per_s: Option<f64>,
    pub generator_per_s: f64,
}

impl<'a> CpuWindow<'a> {
    pub fn start(server_pids: &'a [u32]) -> Self {
        Self {
            server_pids,
            server0: cpu_of(server_pids),
            own0: cpu_seconds("self").unwrap_or(0.0),
            t0: std::time::Instant::now(),
        }
    }

    pub fn finish(&self) -> CpuUse {
        let elapsed = self.t0.elapsed().as_secs_f64();
        CpuUse {
            elapsed,
            server_per_s: match (cpu_of(self.server_pids), self.server0) {
                (Some(b), Some(a)) => Some((b - a) / elapsed),
                _ => None,
            },
            generator_per_s: (cpu_seconds("self").unwrap_or(0.0) - self.own0) / elapsed,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_threads_ticks_are_read_by_its_name() {
        let stat = "4242 (tokio-rt-worker) S 1 4242 4242 0 -1 4194368 100 0 0 0 37 5 0 0 20 0 9 0";
        assert_eq!(super::thread_ticks(stat, "tokio-rt"), Some(42.0));
        assert_eq!(super::thread_ticks(stat, "x264"), None);
        let odd = "7 (a) b (c)) S 1 7 7 0 -1 0 0 0 0 0 3 4 0 0";
        assert_eq!(super::thread_ticks(odd, "a) b"), Some(7.0));
    }
}
