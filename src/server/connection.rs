//! The socket side of a session: framing, streaming of large payloads, replies, and the command loop.
//! Any error ends this connection only, with one log line naming the command and the reason.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;

use super::dispatch::Outcome;
use super::session::{Session, StoredGraph};
use super::stall::StallGuard;
use super::{SessionError, Shared};
use crate::proto::{self, Command, ProtoError, SetTensorHeader};

/// SET_TENSOR data is moved in chunks of this size, so a declared length never allocates up front.
const CHUNK: usize = 4 << 20;

pub struct Connection {
    reader: BufReader<StallGuard<OwnedReadHalf>>,
    writer: BufWriter<OwnedWriteHalf>,
    session: Session,
    shared: Arc<Shared>,
}

impl Connection {
    pub fn new(stream: TcpStream, shared: Arc<Shared>) -> Self {
        let (r, w) = stream.into_split();
        let r = StallGuard::new(r, shared.limits.idle_timeout);
        Connection {
            reader: BufReader::with_capacity(1 << 16, r),
            writer: BufWriter::with_capacity(1 << 16, w),
            session: Session::new(shared.clone()),
            shared,
        }
    }

    /// Runs the handshake and then commands until EOF, an error, or shutdown.
    pub async fn serve(mut self, mut stop: watch::Receiver<bool>) {
        if let Err(e) = self.handshake().await {
            tracing::warn!(command = "HELLO", "closing connection: {e}");
            return;
        }
        loop {
            // The idle clock starts now, not when the previous read finished (a graph may have run since).
            self.reader.get_mut().arm();
            let first = tokio::select! {
                r = self.reader.read_u8() => r,
                _ = stop.changed() => return,
            };
            let byte = match first {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return,
                Err(e) => {
                    tracing::warn!("closing connection: read failed: {e}");
                    return;
                }
            };
            let name = Command::from_u8(byte)
                .map(Command::name)
                .unwrap_or("UNKNOWN");
            if let Err(e) = self.command(byte).await {
                tracing::warn!(command = name, "closing connection: {e}");
                return;
            }
        }
    }

    async fn handshake(&mut self) -> Result<(), SessionError> {
        let cmd = self.reader.read_u8().await?;
        if cmd != Command::Hello as u8 {
            return Err(SessionError::Protocol(format!(
                "expected HELLO, got command {cmd}; update the client"
            )));
        }
        let len = self.reader.read_u64_le().await?;
        proto::expect_len(Command::Hello, len)?;
        let mut caps = [0u8; proto::CONN_CAPS_SIZE];
        self.reader.read_exact(&mut caps).await?;
        // Always all-zero caps: we never offer RDMA, whatever the client sent.
        self.reply(&proto::hello_reply()).await
    }

    async fn reply(&mut self, payload: &[u8]) -> Result<(), SessionError> {
        self.writer.write_u64_le(payload.len() as u64).await?;
        self.writer.write_all(payload).await?;
        self.writer.flush().await?;
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
        let cmd = Command::from_u8(byte).ok_or(ProtoError::UnknownCommand(byte))?;
        let len = self.reader.read_u64_le().await?;
        tracing::debug!(command = cmd.name(), payload = len, "request");
        proto::expect_len(cmd, len)?;
        let limits = &self.shared.limits;
        let (limit, flag) = match cmd {
            Command::SetTensor => (limits.max_set_tensor_bytes, "--max-set-tensor-bytes"),
            _ => (limits.max_request_bytes, "--max-request-bytes"),
        };
        if len > limit {
            return Err(SessionError::Protocol(format!(
                "payload of {len} bytes exceeds the limit of {limit} ({flag})"
            )));
        }
        if cmd == Command::SetTensor {
            return self.set_tensor(len).await;
        }
        let payload = self.read_payload(len).await?;
        match self.session.handle(byte, &payload)? {
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
                if store {
                    self.session.store_graph(device, graph);
                }
                Ok(())
            }
        }
    }

    /// SET_TENSOR: validate the header, then stream the data into the buffer (and the cache file).
    async fn set_tensor(&mut self, len: u64) -> Result<(), SessionError> {
        if len < SetTensorHeader::SIZE as u64 {
            return Err(ProtoError::Short {
                need: SetTensorHeader::SIZE,
                got: len as usize,
            }
            .into());
        }
        let mut head = [0u8; SetTensorHeader::SIZE];
        self.reader.read_exact(&mut head).await?;
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
}
