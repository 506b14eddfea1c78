//! The socket side of a session: framing, streaming of large payloads, replies, the command loop, and
//! the session's server-to-server communicators. Any error ends this connection only, with one log
//! line naming the command and the reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;

use super::comm::{self, CommLink};
use super::dispatch::Outcome;
use super::graphs::StoredGraph;
use super::session::{AllreduceTarget, Rows, Session};
use super::stall::StallGuard;
use super::{SessionError, Shared};
use crate::proto::{
    self, CommInit, Command, ProtoError, Request, Response, SetTensorHeader, Tensor2d,
};

/// SET_TENSOR data is moved in chunks of this size, so a declared length never allocates up front.
const CHUNK: usize = 4 << 20;

pub struct Connection {
    reader: BufReader<StallGuard<OwnedReadHalf>>,
    writer: BufWriter<OwnedWriteHalf>,
    session: Session,
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// One communicator per device (v8 COMM_INIT).
    comm: Vec<Option<CommLink>>,
    comm_failures: u32,
    /// Bytes written for the current request (for the metrics).
    sent: u64,
}

impl Connection {
    pub fn new(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) -> Self {
        let (r, w) = stream.into_split();
        let r = StallGuard::new(r, shared.limits.idle_timeout);
        Connection {
            reader: BufReader::with_capacity(1 << 16, r),
            writer: BufWriter::with_capacity(1 << 16, w),
            session: Session::new(shared.clone()),
            comm: (0..shared.devices.len()).map(|_| None).collect(),
            comm_failures: 0,
            shared,
            peer,
            sent: 0,
        }
    }

    /// Reads the HELLO request (PROTOCOL.md §2.5). The caller bounds how long this may take, and
    /// admits the session before `serve` answers it.
    pub async fn read_hello(&mut self) -> Result<(), SessionError> {
        let cmd = self.reader.read_u8().await?;
        if cmd != Command::Hello as u8 {
            return Err(SessionError::Protocol(format!(
                "expected HELLO, got command {cmd}; update the client"
            )));
        }
        let len = self.reader.read_u64_le().await?;
        proto::frame_header(cmd, len, self.shared.major)?;
        let mut caps = [0u8; proto::CONN_CAPS_SIZE];
        self.reader.read_exact(&mut caps).await?;
        Ok(())
    }

    /// Answers HELLO, then runs commands until EOF, an error, or shutdown.
    pub async fn serve(mut self, mut stop: watch::Receiver<bool>) {
        let major = self.shared.major;
        // Always all-zero caps: we never offer RDMA, whatever the client sent.
        if let Err(e) = self.reply(&Response::hello(major)).await {
            tracing::warn!(peer = %self.peer, command = "HELLO", "closing connection: {e}");
            return;
        }
        let mut served = 0u64;
        loop {
            // The idle clock starts now, not when the previous read finished (a graph may have run since).
            self.reader.get_mut().arm();
            let first = tokio::select! {
                r = self.reader.read_u8() => r,
                _ = stop.changed() => return,
            };
            let byte = match first {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    if served == 0 {
                        tracing::warn!(
                            peer = %self.peer,
                            "client closed right after HELLO: it may speak protocol {}.x \
                             (this server speaks {major}); start with --protocol {}",
                            major.other().version().0,
                            major.other().version().0,
                        );
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(peer = %self.peer, "closing connection: read failed: {e}");
                    return;
                }
            };
            served += 1;
            let name = Command::decode(byte, major)
                .map(Command::name)
                .unwrap_or("UNKNOWN");
            if let Err(e) = self.command(byte).await {
                tracing::warn!(peer = %self.peer, command = name, "closing connection: {e}");
                self.shared.metrics.closed_on_error(name);
                return;
            }
        }
    }

    async fn reply(&mut self, r: &Response) -> Result<(), SessionError> {
        let payload = r.encode();
        self.writer.write_u64_le(payload.len() as u64).await?;
        self.writer.write_all(&payload).await?;
        self.writer.flush().await?;
        self.sent += 8 + payload.len() as u64;
        Ok(())
    }

    /// Reads `len` bytes; memory grows with the bytes that actually arrive, not with `len`.
    async fn read_payload(&mut self, len: u64) -> Result<Vec<u8>, SessionError> {
        let mut buf = Vec::with_capacity(usize::try_from(len.min(CHUNK as u64)).unwrap_or(CHUNK));
        let got = (&mut self.reader).take(len).read_to_end(&mut buf).await?;
        if got as u64 != len {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        Ok(buf)
    }

    async fn command(&mut self, byte: u8) -> Result<(), SessionError> {
        let major = self.shared.major;
        let len = self.reader.read_u64_le().await?;
        let started = Instant::now();
        self.sent = 0;
        let cmd = proto::frame_header(byte, len, major)?;
        tracing::debug!(command = cmd.name(), payload = len, "request");
        let limits = &self.shared.limits;
        let (limit, flag) = match cmd {
            Command::SetTensor | Command::SetTensor2d => {
                (limits.max_set_tensor_bytes, "--max-set-tensor-bytes")
            }
            _ => (limits.max_request_bytes, "--max-request-bytes"),
        };
        if len > limit {
            return Err(SessionError::Protocol(format!(
                "payload of {len} bytes exceeds the limit of {limit} ({flag})"
            )));
        }
        match cmd {
            Command::SetTensor => self.set_tensor(len).await?,
            Command::SetTensor2d => self.set_tensor_2d(len).await?,
            _ => {
                let payload = self.read_payload(len).await?;
                let req = Request::decode(cmd, &payload, major)?;
                let outcome = self.session.handle(req)?;
                self.finish(outcome).await?;
            }
        }
        self.shared
            .metrics
            .command(cmd, started.elapsed(), 9 + len, self.sent);
        Ok(())
    }

    async fn finish(&mut self, outcome: Outcome) -> Result<(), SessionError> {
        match outcome {
            Outcome::Done => Ok(()),
            Outcome::Reply(r) => self.reply(&r).await,
            Outcome::Compute {
                device,
                graph,
                store,
            } => {
                tracing::debug!(
                    nodes = graph.graph.nodes.len(),
                    tensors = graph.graph.tensors.len(),
                    "graph"
                );
                self.compute(device, graph.clone()).await?;
                if let Some(key) = store {
                    self.session.store_graph(device, key, graph)?;
                }
                Ok(())
            }
            Outcome::CommInit(r) => {
                let ok = self.comm_init(&r).await;
                self.reply(&Response::CommInit(ok)).await
            }
            Outcome::CommAllreduce(t) => self.allreduce(t).await,
            Outcome::CommFree { device } => {
                if let Some(slot) = self.comm.get_mut(device) {
                    *slot = None;
                }
                Ok(())
            }
        }
    }

    /// SET_TENSOR: validate the header, then stream the data into the buffer (and the cache file).
    async fn set_tensor(&mut self, len: u64) -> Result<(), SessionError> {
        let head = self.header::<{ SetTensorHeader::SIZE }>(len).await?;
        let h = SetTensorHeader::parse(&head)?;
        let n = len - SetTensorHeader::SIZE as u64;
        let target = self.session.set_tensor_target(&h, n)?;
        let mut cache = match (h.cache_flag, self.session.cache()) {
            (true, Some(c)) => c.writer().map_err(|e| tracing::warn!("cache: {e}")).ok(),
            _ => None,
        };
        let mut chunk = vec![0u8; (n as usize).min(CHUNK)];
        let mut done = 0usize;
        let n = n as usize;
        while done < n {
            let part = (n - done).min(CHUNK);
            let buf = chunk.get_mut(..part).unwrap_or_default();
            self.reader.read_exact(buf).await?;
            target.buf.write(target.offset + done, buf)?;
            if let Some(w) = cache.as_mut()
                && let Err(e) = w.write(buf)
            {
                tracing::warn!("cache write failed: {e}");
                cache = None;
            }
            done += part;
        }
        if let Some(w) = cache {
            match w.finish() {
                Ok(path) => tracing::info!("[set_tensor] saved to '{}'", path.display()),
                Err(e) => tracing::warn!("cache write failed: {e}"),
            }
        }
        Ok(())
    }

    /// The fixed header of a streamed request.
    async fn header<const N: usize>(&mut self, len: u64) -> Result<[u8; N], SessionError> {
        if len < N as u64 {
            return Err(ProtoError::Short {
                need: N,
                got: len as usize,
            }
            .into());
        }
        let mut head = [0u8; N];
        self.reader.read_exact(&mut head).await?;
        Ok(head)
    }

    /// SET_TENSOR_2D: validate, then stream whole rows (several per chunk when they are small).
    async fn set_tensor_2d(&mut self, len: u64) -> Result<(), SessionError> {
        let head = self.header::<{ Tensor2d::SIZE }>(len).await?;
        let h = Tensor2d::parse(&head)?;
        let data = len - Tensor2d::SIZE as u64;
        if data != h.packed_len()? {
            return Err(ProtoError::Invalid(format!(
                "SET_TENSOR_2D: {data} data bytes for {} rows of {}",
                h.n_copies, h.size
            ))
            .into());
        }
        let rows = self.session.rows(&h, false)?;
        self.stream_rows(&rows).await
    }

    async fn stream_rows(&mut self, rows: &Rows) -> Result<(), SessionError> {
        let per_chunk = (CHUNK / rows.size).clamp(1, rows.n_copies);
        let chunk_len = if rows.size > CHUNK {
            CHUNK
        } else {
            per_chunk * rows.size
        };
        let mut chunk = vec![0u8; chunk_len];
        let mut row = 0;
        while row < rows.n_copies {
            if rows.size > CHUNK {
                // One row in pieces.
                let mut done = 0;
                while done < rows.size {
                    let part = (rows.size - done).min(CHUNK);
                    let buf = chunk.get_mut(..part).unwrap_or_default();
                    self.reader.read_exact(buf).await?;
                    rows.buf.write(rows.row_offset(row) + done, buf)?;
                    done += part;
                }
                row += 1;
                continue;
            }
            let n = per_chunk.min(rows.n_copies - row);
            let buf = chunk.get_mut(..n * rows.size).unwrap_or_default();
            self.reader.read_exact(buf).await?;
            for (i, r) in buf.chunks_exact(rows.size).enumerate() {
                rows.buf.write(rows.row_offset(row + i), r)?;
            }
            row += n;
        }
        Ok(())
    }

    /// Runs a graph on a blocking thread so other sessions keep being served.
    async fn compute(&mut self, dev: usize, g: StoredGraph) -> Result<(), SessionError> {
        let device = self
            .session
            .device_arc(dev)
            .ok_or(SessionError::BadDevice(dev as u32))?;
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || device.compute_cached(&g.graph, &g.buffers, &g.cache))
            .await
            .map_err(|e| SessionError::Protocol(format!("compute task failed: {e}")))??;
        tracing::debug!(
            elapsed_us = started.elapsed().as_micros() as u64,
            "graph computed"
        );
        Ok(())
    }

    /// COMM_INIT: `true` once joined (or already joined, as the reference answers).
    async fn comm_init(&mut self, r: &CommInit) -> bool {
        let device = r.device as usize;
        if self.comm.get(device).is_some_and(Option::is_some) {
            return true;
        }
        let policy = &self.shared.comm;
        if !policy.enabled {
            tracing::info!(peer = %self.peer, "COMM_INIT refused (--no-comm): the client falls back");
            return false;
        }
        if self.comm_failures >= policy.max_failures {
            tracing::warn!(peer = %self.peer, "COMM_INIT refused: too many failed attempts");
            return false;
        }
        match comm::join(policy, r).await {
            Ok(link) => {
                tracing::info!(
                    peer = %self.peer,
                    "device {device} joined pairwise comm as rank {} (peer {})",
                    link.rank,
                    link.peer
                );
                if let Some(slot) = self.comm.get_mut(device) {
                    *slot = Some(link);
                }
                true
            }
            Err(e) => {
                self.comm_failures += 1;
                tracing::warn!(peer = %self.peer, rank = r.rank, port = r.port, "COMM_INIT failed: {e}");
                false
            }
        }
    }

    /// COMM_ALLREDUCE: read the partial, exchange with the peer, write the sum back.
    async fn allreduce(&mut self, t: AllreduceTarget) -> Result<(), SessionError> {
        let link = self
            .comm
            .get_mut(t.device)
            .and_then(Option::as_mut)
            .ok_or_else(|| {
                SessionError::Protocol(format!("no communicator for device {}", t.device))
            })?;
        let mut bytes = vec![0u8; t.elements * 4];
        t.buf.read(t.offset, &mut bytes)?;
        let mut vals: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let result = link.allreduce(&mut vals, &self.shared.comm).await;
        if let Err(e) = result {
            // A broken link cannot be resynchronised with the peer: drop it and close.
            if let Some(slot) = self.comm.get_mut(t.device) {
                *slot = None;
            }
            return Err(SessionError::Protocol(format!("COMM_ALLREDUCE: {e}")));
        }
        for (dst, v) in bytes.chunks_exact_mut(4).zip(&vals) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
        t.buf.write(t.offset, &bytes)?;
        Ok(())
    }
}
