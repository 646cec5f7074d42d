//! The service's processes as the benchmark runs them: spawned from the `upconfirm` binary
//! built beside this one, with their CPU time and peak memory read from `/proc`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// One `upconfirm api` or `upconfirm worker` child.
pub struct Proc {
    pub name: String,
    child: tokio::process::Child,
    pid: u32,
    /// Where its `/healthz` and `/readyz` answer.
    pub health: SocketAddr,
}

impl Proc {
    /// Starts `upconfirm <role>` with `env` on top of this process's environment; its output
    /// goes to `<logs>/<name>.log`. `health_var` names the variable that sets its listener.
    pub async fn spawn(
        name: &str,
        role: &str,
        env: &[(String, String)],
        health_var: &str,
        logs: &Path,
    ) -> anyhow::Result<Proc> {
        let health = free_addr()?;
        std::fs::create_dir_all(logs)?;
        let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
        let child = tokio::process::Command::new(service_exe()?)
            .arg(role)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(health_var, health.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting upconfirm {role}"))?;
        let pid = child.id().context("the child has no pid")?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            pid,
            health,
        })
    }

    /// Waits until `/readyz` answers 200 (database, migrations and broker or consumer ready).
    pub async fn ready(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("http://{}/readyz", self.health);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited during startup ({status})", self.name);
            }
            if let Ok(r) = http.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("{} not ready after 30 s", self.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// User plus system CPU time of all its threads so far, in milliseconds.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn cpu_ms(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        cpu_ms_from_stat(&stat, clock_ticks())
    }

    /// The most memory it has held resident so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        kib_field(&status, "VmHWM:").context("no VmHWM in /proc status")
    }

    /// SIGTERM, then waits for it to exit (it drains first); kills it after `grace`.
    pub async fn stop(mut self, grace: Duration) -> anyhow::Result<()> {
        let sent = tokio::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await?;
        if !sent.success() {
            bail!("could not signal {}", self.name);
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!("{} exited with {status}", self.name);
                }
            }
            Err(_) => {
                self.child.kill().await?;
                bail!("{} did not stop within {grace:?}", self.name);
            }
        }
        Ok(())
    }
}

/// The service's binary: `upconfirm` in the folder of this one, as a build of both packages
/// leaves them (`cargo build --release -p upconfirm -p upconfirm-bench`).
fn service_exe() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?
        .with_file_name(format!("upconfirm{}", std::env::consts::EXE_SUFFIX));
    if !exe.is_file() {
        bail!(
            "no service binary at {}: build it with `cargo build -p upconfirm` and the same profile",
            exe.display()
        );
    }
    Ok(exe)
}

/// An address on loopback no one listens on right now.
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// Clock ticks per second, as `/proc/<pid>/stat` counts CPU time.
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU time used so far by every process of the machine, in milliseconds, grouped by what
/// the process is: `upconfirm` (the service's processes), `postgres`, `rabbitmq`, `garage`,
/// `bench` (this load generator), and `all` (the machine's total busy time, from /proc/stat).
/// The difference of two snapshots says where the CPU of what ran between them went.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot(BTreeMap<String, f64>);

impl CpuSnapshot {
    pub fn take() -> anyhow::Result<CpuSnapshot> {
        let ticks = clock_ticks();
        let me = std::process::id();
        let mut groups = BTreeMap::new();
        for entry in std::fs::read_dir("/proc")? {
            let Some(pid) = entry?
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            // Processes come and go while we look; those gone are skipped.
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let group = if pid == me {
                "bench"
            } else {
                match group_of(&stat) {
                    Some(g) => g,
                    None => continue,
                }
            };
            // A parent's reaped children count as its own (PostgreSQL's backends).
            let ms = cpu_ms_with_children_from_stat(&stat, ticks)?;
            *groups.entry(group.to_owned()).or_insert(0.0) += ms;
        }
        let all = std::fs::read_to_string("/proc/stat")?;
        groups.insert("all".to_owned(), busy_ms_from_proc_stat(&all, ticks)?);
        Ok(CpuSnapshot(groups))
    }

    /// Milliseconds each group used since `earlier`, divided by `ops`; `other` is what the
    /// machine spent outside the named groups.
    pub fn per_op_since(&self, earlier: &CpuSnapshot, ops: usize) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        let mut named = 0.0;
        for (group, &now) in &self.0 {
            let used = (now - earlier.0.get(group).copied().unwrap_or(0.0)).max(0.0);
            if group != "all" {
                named += used;
            }
            out.insert(group.clone(), used / ops.max(1) as f64);
        }
        let all = out.get("all").copied().unwrap_or(0.0) * ops.max(1) as f64;
        out.insert(
            "other".to_owned(),
            (all - named).max(0.0) / ops.max(1) as f64,
        );
        out
    }
}

/// The group of a process, from the command name in its `/proc/<pid>/stat` line.
fn group_of(stat: &str) -> Option<&'static str> {
    let name = stat.split_once('(')?.1.rsplit_once(')')?.0;
    match name {
        n if n.starts_with("upconfirm") => Some("upconfirm"),
        n if n.starts_with("postgres") => Some("postgres"),
        n if n.starts_with("beam") || n == "erl_child_setup" || n == "epmd" => Some("rabbitmq"),
        n if n.starts_with("garage") => Some("garage"),
        _ => None,
    }
}

/// Busy time of the whole machine (all but idle and iowait) from the `cpu` line of
/// `/proc/stat`, in milliseconds.
fn busy_ms_from_proc_stat(stat: &str, ticks_per_second: f64) -> anyhow::Result<f64> {
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
    let fields: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse::<f64>().context("malformed /proc/stat"))
        .collect::<anyhow::Result<_>>()?;
    // user nice system idle iowait irq softirq steal ...; guest time is already in user.
    let busy: f64 = fields
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    Ok(busy * 1000.0 / ticks_per_second)
}

/// utime + stime + cutime + cstime (fields 14 to 17) of a `/proc/<pid>/stat` line, in ms.
fn cpu_ms_with_children_from_stat(stat: &str, ticks_per_second: f64) -> anyhow::Result<f64> {
    let own = cpu_ms_from_stat(stat, ticks_per_second)?;
    let fields = stat_fields(stat)?;
    let children: f64 = fields
        .get(13..15)
        .context("short /proc stat")?
        .iter()
        .map(|f| f.parse::<f64>().context("malformed /proc stat field"))
        .sum::<anyhow::Result<f64>>()?;
    Ok(own + children * 1000.0 / ticks_per_second)
}

/// The fields of a `/proc/<pid>/stat` line from the third (state) on.
fn stat_fields(stat: &str) -> anyhow::Result<Vec<&str>> {
    Ok(stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc stat")?
        .split_whitespace()
        .collect())
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in milliseconds. The command
/// name in parentheses may hold spaces, so fields are counted after its closing parenthesis.
fn cpu_ms_from_stat(stat: &str, ticks_per_second: f64) -> anyhow::Result<f64> {
    let fields = stat_fields(stat)?;
    // `after` starts at field 3 (state); field 14 is at index 11.
    let ticks = |i: usize| -> anyhow::Result<f64> {
        fields
            .get(i)
            .context("short /proc stat")?
            .parse::<f64>()
            .context("malformed /proc stat field")
    };
    Ok((ticks(11)? + ticks(12)?) * 1000.0 / ticks_per_second)
}

/// A `Name:   1234 kB` line of `/proc/<pid>/status`.
fn kib_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (upconfirm (w) x) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 9 0";
        assert_eq!(cpu_ms_from_stat(stat, 100.0).unwrap(), 3000.0);
        assert!(cpu_ms_from_stat("4242 (x) S 1", 100.0).is_err());
    }

    #[test]
    fn children_and_machine_time() {
        let stat = "7 (postgres) S 1 2 3 4 5 6 7 8 9 10 250 50 100 100 20 0 9 0";
        assert_eq!(cpu_ms_with_children_from_stat(stat, 100.0).unwrap(), 5000.0);
        assert_eq!(group_of(stat), Some("postgres"));
        assert_eq!(group_of("9 (beam.smp) S 1"), Some("rabbitmq"));
        assert_eq!(group_of("9 (bash) S 1"), None);
        let machine = "cpu  100 10 50 9000 40 5 5 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
        assert_eq!(busy_ms_from_proc_stat(machine, 100.0).unwrap(), 1700.0);
    }

    #[test]
    fn per_op_splits_and_names_the_rest_other() {
        let before = CpuSnapshot(BTreeMap::from([
            ("all".to_owned(), 1000.0),
            ("postgres".to_owned(), 100.0),
        ]));
        let after = CpuSnapshot(BTreeMap::from([
            ("all".to_owned(), 3000.0),
            ("postgres".to_owned(), 1100.0),
            ("garage".to_owned(), 500.0),
        ]));
        let per = after.per_op_since(&before, 100);
        assert_eq!(per["all"], 20.0);
        assert_eq!(per["postgres"], 10.0);
        assert_eq!(per["garage"], 5.0);
        assert_eq!(per["other"], 5.0);
    }

    #[test]
    fn status_fields_in_kib() {
        let status = "Name:\tupconfirm\nVmPeak:\t  99 kB\nVmHWM:\t   31337 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(kib_field(status, "VmHWM:"), Some(31337));
        assert_eq!(kib_field(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_reads_its_own_figures() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(kib_field(&status, "VmHWM:").unwrap() > 0);
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        cpu_ms_from_stat(&stat, clock_ticks()).unwrap();
    }
}
