//! One request in, one outcome out: the command semantics without sockets, so the connection loop, the
//! fuzzer and tests drive the same code. The connection streams SET_TENSOR itself (to avoid buffering
//! large uploads) and runs `Outcome::Compute` off the async runtime.

use super::SessionError;
use super::session::{Session, StoredGraph};
use crate::proto::{
    self, AllocBuffer, BufferClear, Command, CopyTensor, GetAllocSize, GetTensor, MemsetTensor,
    ProtoError, SetTensorHash, SetTensorHeader, WireTensor,
};

/// What the caller must do after `Session::handle`.
pub enum Outcome {
    /// Fire-and-forget command: nothing to send.
    Done,
    /// Send this reply payload.
    Reply(Vec<u8>),
    /// Run the graph on `device`; then, if `store`, keep it for GRAPH_RECOMPUTE (`store_graph`).
    Compute {
        device: usize,
        graph: StoredGraph,
        store: bool,
    },
}

fn u32_of(p: &[u8]) -> Result<u32, ProtoError> {
    proto::u32_at(p, 0)
}

fn u64_of(p: &[u8]) -> Result<u64, ProtoError> {
    proto::u64_at(p, 0)
}

impl Session {
    /// Handles one request after the handshake (`cmd` byte, whole payload). SET_TENSOR's data is written
    /// straight to the buffer here, without the cache. An error means: close the connection.
    pub fn handle(&mut self, cmd: u8, p: &[u8]) -> Result<Outcome, SessionError> {
        let cmd = Command::from_u8(cmd).ok_or(ProtoError::UnknownCommand(cmd))?;
        proto::expect_len(cmd, p.len() as u64)?;
        let reply = match cmd {
            Command::Hello => {
                return Err(SessionError::Protocol("HELLO after the handshake".into()));
            }
            Command::DeviceCount => self.device_count().to_le_bytes().to_vec(),
            Command::GetAlignment => self.alignment(u32_of(p)?)?.to_le_bytes().to_vec(),
            Command::GetMaxSize => self.max_size(u32_of(p)?)?.to_le_bytes().to_vec(),
            Command::GetDeviceMemory => {
                let (free, total) = self.memory(u32_of(p)?)?;
                [free.to_le_bytes(), total.to_le_bytes()].concat()
            }
            Command::AllocBuffer => {
                let (h, size) = self.alloc(AllocBuffer::parse(p)?)?;
                [h.to_le_bytes(), size.to_le_bytes()].concat()
            }
            Command::BufferGetBase => self.buffer_base(u64_of(p)?)?.to_le_bytes().to_vec(),
            Command::FreeBuffer => {
                self.free(u64_of(p)?)?;
                return Ok(Outcome::Done);
            }
            Command::BufferClear => {
                let r = BufferClear::parse(p)?;
                self.clear(r.handle, r.value)?;
                return Ok(Outcome::Done);
            }
            Command::SetTensor => {
                let h = SetTensorHeader::parse(p)?;
                let data = p.get(SetTensorHeader::SIZE..).unwrap_or_default();
                let t = self.set_tensor_target(&h, data.len() as u64)?;
                t.buf.write(t.offset, data)?;
                return Ok(Outcome::Done);
            }
            Command::SetTensorHash => {
                vec![self.set_tensor_hash(&SetTensorHash::parse(p)?)? as u8]
            }
            Command::GetTensor => self.get_tensor(&GetTensor::parse(p)?)?,
            Command::CopyTensor => vec![self.copy_tensor(&CopyTensor::parse(p)?)? as u8],
            Command::MemsetTensor => {
                self.memset(&MemsetTensor::parse(p)?)?;
                return Ok(Outcome::Done);
            }
            Command::InitTensor => {
                self.init_tensor(&WireTensor::parse(p)?)?;
                return Ok(Outcome::Done);
            }
            Command::GetAllocSize => self
                .alloc_size(&GetAllocSize::parse(p)?)?
                .to_le_bytes()
                .to_vec(),
            Command::GraphCompute => {
                let (device, graph) = self.prepare_graph(p)?;
                return Ok(Outcome::Compute {
                    device,
                    graph,
                    store: true,
                });
            }
            Command::GraphRecompute => {
                let dev = u32_of(p)?;
                return Ok(Outcome::Compute {
                    device: dev as usize,
                    graph: self.stored_graph(dev)?,
                    store: false,
                });
            }
        };
        Ok(Outcome::Reply(reply))
    }

    /// `handle` with graphs computed on the calling thread: the reply, if the command has one.
    pub fn handle_blocking(&mut self, cmd: u8, p: &[u8]) -> Result<Option<Vec<u8>>, SessionError> {
        match self.handle(cmd, p)? {
            Outcome::Done => Ok(None),
            Outcome::Reply(r) => Ok(Some(r)),
            Outcome::Compute {
                device,
                graph,
                store,
            } => {
                let dev = self
                    .device_arc(device)
                    .ok_or(SessionError::BadDevice(device as u32))?;
                dev.compute_cached(&graph.graph, &graph.buffers, &graph.cache)?;
                if store {
                    self.store_graph(device, graph);
                }
                Ok(None)
            }
        }
    }
}
