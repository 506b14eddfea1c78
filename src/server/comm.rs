//! Pairwise communicators between two servers (v8 COMM_*, llama.cpp's `split_mode=tensor`), wire-
//! compatible with the reference: rank 0 listens, rank 1 connects, each side sends 24 caps bytes
//! (ours are always zero, so a peer with RDMA stays on TCP), then every COMM_ALLREDUCE exchanges the
//! tensor (rank 0 sends first) and adds the peer's partial in place. Large partials (≥ 32768 f32)
//! travel as bf16, as the reference sends them.
//!
//! The peer address comes from the network, so the server must not become a port scanner or a relay:
//! ports below 1024 are refused, every connect, accept, handshake and exchange is time-bounded, the
//! peer must send exactly its 24 caps bytes and then wait (a service that talks first, like SSH or
//! SMTP, fails the handshake before any tensor byte is sent), a server bound to loopback only talks to
//! loopback peers, and a session gets a few failed COMM_INITs before they are refused outright.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};

use crate::ggml::GgmlType;
use crate::proto::{CONN_CAPS_SIZE, CommInit};

/// The reference sends partials of at least this many f32 elements as bf16.
const BF16_WIRE_MIN: usize = 32768;
/// How long an unprompted extra byte after the caps may take to show that the peer is not a comm peer.
const QUIET: Duration = Duration::from_millis(50);

/// Where and how COMM_INIT may reach peers (`--no-comm`, the bind address).
#[derive(Clone, Debug)]
pub struct CommPolicy {
    pub enabled: bool,
    /// Rank 0 listens on this address (the server's own bind address, not every interface).
    pub listen_ip: IpAddr,
    /// Only loopback peers (the default when the server itself is bound to loopback).
    pub loopback_only: bool,
    /// Rank 0's wait for its peer; the reference client sends both COMM_INITs back to back.
    pub accept_timeout: Duration,
    /// Rank 1's connect retries (the reference retries for 5 s while rank 0 starts listening).
    pub connect_timeout: Duration,
    /// The caps exchange, once connected.
    pub handshake_timeout: Duration,
    /// One direction of an allreduce exchange: the peer may still be computing its partial.
    pub exchange_timeout: Duration,
    /// Failed COMM_INITs a session may make before further ones are refused without connecting.
    pub max_failures: u32,
}

impl Default for CommPolicy {
    fn default() -> Self {
        CommPolicy {
            enabled: true,
            listen_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            loopback_only: true,
            accept_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            exchange_timeout: Duration::from_secs(120),
            max_failures: 4,
        }
    }
}

impl CommPolicy {
    /// The policy for a server bound to `ip`.
    pub fn for_bind(ip: IpAddr, enabled: bool) -> Self {
        CommPolicy {
            enabled,
            listen_ip: ip,
            loopback_only: ip.is_loopback(),
            ..Default::default()
        }
    }

    fn peer_allowed(&self, ip: IpAddr) -> Result<(), String> {
        let ip = ip.to_canonical();
        let special = ip.is_unspecified()
            || ip.is_multicast()
            || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
        if special {
            return Err(format!("peer address {ip} is not a host"));
        }
        if self.loopback_only && !ip.is_loopback() {
            return Err(format!(
                "peer {ip} is not on loopback and this server is bound to loopback"
            ));
        }
        Ok(())
    }
}

/// A joined communicator: the socket to the peer server and our rank.
pub struct CommLink {
    stream: TcpStream,
    pub rank: u32,
    pub peer: SocketAddr,
}

/// Joins the communicator `req` describes (world 2, rank 0 or 1, already checked).
pub async fn join(policy: &CommPolicy, req: &CommInit) -> Result<CommLink, String> {
    let port = u16::try_from(req.port)
        .ok()
        .filter(|p| *p >= 1024)
        .ok_or_else(|| format!("comm port {} is not in 1024..=65535", req.port))?;
    if req.rank == 0 {
        accept_peer(policy, port).await
    } else {
        let host = std::str::from_utf8(&req.host)
            .ok()
            .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
            .ok_or("peer host is not a printable name")?;
        connect_peer(policy, host, port).await
    }
}

async fn accept_peer(policy: &CommPolicy, port: u16) -> Result<CommLink, String> {
    let listener = TcpListener::bind((policy.listen_ip, port))
        .await
        .map_err(|e| format!("cannot listen on {}:{port}: {e}", policy.listen_ip))?;
    let deadline = Instant::now() + policy.accept_timeout;
    loop {
        let (mut stream, peer) = tokio::time::timeout_at(deadline, listener.accept())
            .await
            .map_err(|_| format!("no peer joined on port {port} in time"))?
            .map_err(|e| format!("accept on port {port}: {e}"))?;
        if let Err(e) = policy.peer_allowed(peer.ip()) {
            tracing::warn!(%peer, "comm: connection dropped: {e}");
            continue;
        }
        let _ = stream.set_nodelay(true);
        // The peer speaks first; only then do we answer with our caps.
        match read_caps(policy, &mut stream).await {
            Ok(()) => {
                write_caps(policy, &mut stream).await?;
                return Ok(CommLink {
                    stream,
                    rank: 0,
                    peer,
                });
            }
            Err(e) => tracing::warn!(%peer, "comm: handshake failed: {e}"),
        }
    }
}

async fn connect_peer(policy: &CommPolicy, host: &str, port: u16) -> Result<CommLink, String> {
    let deadline = Instant::now() + policy.connect_timeout;
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout_at(deadline, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| format!("resolving {host} timed out"))?
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
    let mut refused = Vec::new();
    let addrs: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| match policy.peer_allowed(a.ip()) {
            Ok(()) => true,
            Err(e) => {
                refused.push(e);
                false
            }
        })
        .collect();
    if addrs.is_empty() {
        return Err(format!(
            "no allowed address for {host}:{port}: {}",
            refused.join("; ")
        ));
    }
    // Rank 0 may not be listening yet: retry until the deadline, as the reference does.
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        for &addr in &addrs {
            let attempt = tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await;
            match attempt {
                Ok(Ok(mut stream)) => {
                    let _ = stream.set_nodelay(true);
                    write_caps(policy, &mut stream).await?;
                    read_caps(policy, &mut stream).await?;
                    return Ok(CommLink {
                        stream,
                        rank: 1,
                        peer: addr,
                    });
                }
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "timed out".into(),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("cannot connect to {host}:{port}: {last}"))
}

/// Our caps: all zero (no RDMA offered).
async fn write_caps(policy: &CommPolicy, s: &mut TcpStream) -> Result<(), String> {
    timeout(policy.handshake_timeout, s.write_all(&[0; CONN_CAPS_SIZE]))
        .await
        .map_err(|_| "sending caps timed out".to_string())?
        .map_err(|e| format!("sending caps: {e}"))
}

/// The peer's caps: exactly 24 bytes and then silence. Their content does not matter (we never
/// switch transport: the peer sees our zero caps and stays on TCP as well).
async fn read_caps(policy: &CommPolicy, s: &mut TcpStream) -> Result<(), String> {
    let mut caps = [0u8; CONN_CAPS_SIZE];
    timeout(policy.handshake_timeout, s.read_exact(&mut caps))
        .await
        .map_err(|_| "the peer sent no caps in time".to_string())?
        .map_err(|e| format!("reading caps: {e}"))?;
    let mut extra = [0u8; 1];
    match timeout(QUIET, s.peek(&mut extra)).await {
        Err(_) => Ok(()),
        Ok(Ok(0)) => Err("the peer closed after its caps".into()),
        Ok(Ok(_)) => Err("the peer sent more than its caps: not a comm peer".into()),
        Ok(Err(e)) => Err(format!("after caps: {e}")),
    }
}

impl CommLink {
    /// Sums `vals` with the peer's partial in place: `vals + peer`, the peer's values rounded to bf16
    /// when the reference sends them so (then the two ranks' sums differ in the last bits, as with
    /// two reference servers).
    pub async fn allreduce(&mut self, vals: &mut [f32], policy: &CommPolicy) -> Result<(), String> {
        if vals.is_empty() {
            return Ok(());
        }
        let typ = if vals.len() >= BF16_WIRE_MIN {
            GgmlType::Bf16
        } else {
            GgmlType::F32
        };
        let mut send = vec![0u8; typ.row_size(vals.len()).ok_or("partial too large")?];
        crate::quant::quantize_row(typ, vals, &mut send).map_err(|e| e.to_string())?;
        let mut recv = vec![0u8; send.len()];
        let limit = policy.exchange_timeout;
        let stream = &mut self.stream;
        let io = async {
            if self.rank == 0 {
                stream.write_all(&send).await?;
                stream.flush().await?;
                stream.read_exact(&mut recv).await?;
            } else {
                stream.read_exact(&mut recv).await?;
                stream.write_all(&send).await?;
                stream.flush().await?;
            }
            Ok::<_, std::io::Error>(())
        };
        timeout(limit, io)
            .await
            .map_err(|_| format!("exchange with {} stalled for {limit:?}", self.peer))?
            .map_err(|e| format!("exchange with {}: {e}", self.peer))?;
        let mut peer = vec![0f32; vals.len()];
        crate::quant::dequantize_row(typ, &recv, &mut peer).map_err(|e| e.to_string())?;
        vals.iter_mut().zip(&peer).for_each(|(v, p)| *v += p);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn init(rank: u32, port: u16) -> CommInit {
        CommInit {
            device: 0,
            rank,
            world: 2,
            port: port as u32,
            host: b"127.0.0.1".to_vec(),
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[tokio::test]
    async fn two_ranks_join_and_sum_as_the_reference() {
        let p = CommPolicy::default();
        let port = free_port();
        let (r0, r1) = (init(0, port), init(1, port));
        let (a, b) = tokio::join!(join(&p, &r0), join(&p, &r1));
        let (mut a, mut b) = (a.unwrap(), b.unwrap());
        assert_eq!((a.rank, b.rank), (0, 1));
        // Small: f32 on the wire, both ranks get the exact sum.
        let (mut x, mut y) = (vec![1.5f32, -2.0, 3.25], vec![0.25f32, 4.0, -1.0]);
        let (ra, rb) = tokio::join!(a.allreduce(&mut x, &p), b.allreduce(&mut y, &p));
        ra.unwrap();
        rb.unwrap();
        assert_eq!(x, vec![1.75, 2.0, 2.25]);
        assert_eq!(x, y);
        // Large: the peer's partial arrives as bf16 (1 + 2^-10 rounds to 1 in bf16).
        let n = BF16_WIRE_MIN;
        let (mut x, mut y) = (vec![1.0f32 + 1.0 / 1024.0; n], vec![2.0f32; n]);
        let (ra, rb) = tokio::join!(a.allreduce(&mut x, &p), b.allreduce(&mut y, &p));
        ra.unwrap();
        rb.unwrap();
        assert!(
            x.iter().all(|&v| v == 3.0 + 1.0 / 1024.0),
            "rank 0: its own + bf16(2)"
        );
        assert!(
            y.iter().all(|&v| v == 3.0),
            "rank 1: its own + bf16(1+2^-10)"
        );
    }

    #[tokio::test]
    async fn a_talkative_service_is_not_a_peer() {
        // A server that greets first (like SSH) fails the handshake before any tensor byte moves.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
        });
        let p = CommPolicy {
            connect_timeout: Duration::from_secs(1),
            ..Default::default()
        };
        let e = join(&p, &init(1, port)).await.err().unwrap();
        assert!(e.contains("not a comm peer"), "{e}");
    }

    #[tokio::test]
    async fn addresses_and_ports_from_the_network_are_checked() {
        let p = CommPolicy {
            connect_timeout: Duration::from_millis(300),
            ..Default::default()
        };
        let mut r = init(1, 80);
        assert!(join(&p, &r).await.err().unwrap().contains("1024"));
        r.port = 70000;
        assert!(join(&p, &r).await.is_err());
        r.port = 5000;
        r.host = b"10.1.2.3".to_vec();
        assert!(join(&p, &r).await.err().unwrap().contains("loopback"));
        r.host = b"0.0.0.0".to_vec();
        assert!(join(&p, &r).await.err().unwrap().contains("not a host"));
        r.host = b"bad host\n".to_vec();
        assert!(join(&p, &r).await.is_err());
        // Nobody listening: bounded by the connect deadline.
        r.host = b"127.0.0.1".to_vec();
        r.port = free_port() as u32;
        let t = std::time::Instant::now();
        assert!(join(&p, &r).await.is_err());
        assert!(t.elapsed() < Duration::from_secs(30));
        let wide = CommPolicy::for_bind("0.0.0.0".parse().unwrap(), true);
        assert!(!wide.loopback_only);
        assert!(wide.peer_allowed("10.1.2.3".parse().unwrap()).is_ok());
        assert!(wide.peer_allowed("224.0.0.1".parse().unwrap()).is_err());
    }

    #[tokio::test]
    async fn rank_zero_gives_up_when_nobody_joins() {
        let p = CommPolicy {
            accept_timeout: Duration::from_millis(200),
            ..Default::default()
        };
        let e = join(&p, &init(0, free_port())).await.err().unwrap();
        assert!(e.contains("no peer joined"), "{e}");
    }
}
