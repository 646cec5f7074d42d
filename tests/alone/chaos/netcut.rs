//! A host of its own for one worker: a network namespace joined to this one by a veth
//! pair, with forwarders here that carry its traffic to PostgreSQL, RabbitMQ and the
//! store (which listen on loopback only). Taking the pair's link down cuts the worker
//! off silently — packets are dropped, no reset is sent either way — as a network
//! partition does; bringing it up heals it.
//!
//! Needs `ip` (iproute2) and the right to make namespaces (root, or CAP_NET_ADMIN).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::Command;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct NetCut {
    pub namespace: String,
    host_link: String,
    pub host_ip: Ipv4Addr,
    forwarders: Vec<JoinHandle<()>>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetCut {
    /// Makes the namespace and its link, up. Fails where namespaces cannot be made.
    pub fn create() -> Result<NetCut, String> {
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let n = u8::try_from(std::process::id() % 250).unwrap_or(0) + 1;
        let namespace = format!("upc-{tag}");
        let host_link = format!("uch{tag}");
        let ns_link = format!("ucn{tag}");
        let host_ip = Ipv4Addr::new(10, 213, n, 1);
        let ns_ip = Ipv4Addr::new(10, 213, n, 2);
        ip(&["netns", "add", &namespace])?;
        let cut = NetCut {
            namespace: namespace.clone(),
            host_link: host_link.clone(),
            host_ip,
            forwarders: Vec::new(),
        };
        ip(&[
            "link", "add", &host_link, "type", "veth", "peer", "name", &ns_link,
        ])?;
        ip(&["link", "set", &ns_link, "netns", &namespace])?;
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_link])?;
        ip(&["link", "set", &host_link, "up"])?;
        let in_ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &namespace, "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        in_ns(&["addr", "add", &format!("{ns_ip}/30"), "dev", &ns_link])?;
        in_ns(&["link", "set", &ns_link, "up"])?;
        in_ns(&["link", "set", "lo", "up"])?;
        Ok(cut)
    }

    /// A forwarder on this side of the link to `target`: the address the worker dials.
    pub async fn forward(&mut self, target: SocketAddr) -> SocketAddr {
        let listener = TcpListener::bind(SocketAddrV4::new(self.host_ip, 0))
            .await
            .expect("bind a forwarder on the link");
        let at = listener.local_addr().expect("forwarder address");
        self.forwarders.push(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
        at
    }

    /// Drops every packet between the namespace and the rest, without a reset.
    pub fn cut(&self) {
        ip(&["link", "set", &self.host_link, "down"]).expect("take the link down");
    }

    pub fn heal(&self) {
        ip(&["link", "set", &self.host_link, "up"]).expect("bring the link up");
    }

    /// `argv` run inside the namespace.
    pub fn command(&self, argv: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.namespace]).args(argv);
        cmd
    }

    /// The HTTP status `GET url` answers inside the namespace (0 for no answer in 4 s).
    pub async fn http_status(&self, url: &str) -> u16 {
        let out = self
            .command(&[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "--max-time",
                "4",
                "-w",
                "%{http_code}",
                url,
            ])
            .output()
            .await
            .expect("run curl in the namespace");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

impl Drop for NetCut {
    fn drop(&mut self) {
        for f in &self.forwarders {
            f.abort();
        }
        let _ = ip(&["link", "del", &self.host_link]);
        let _ = ip(&["netns", "del", &self.namespace]);
    }
}
