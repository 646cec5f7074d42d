//! The service's processes as the benchmark runs them: spawned from this same binary, with
//! their CPU time and peak memory read from `/proc`.

use std::net::SocketAddr;
use std::path::Path;
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
        let child = tokio::process::Command::new(std::env::current_exe()?)
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

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in milliseconds. The command
/// name in parentheses may hold spaces, so fields are counted after its closing parenthesis.
fn cpu_ms_from_stat(stat: &str, ticks_per_second: f64) -> anyhow::Result<f64> {
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
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
