//! One request in, one outcome out: the command semantics without sockets, so the connection loop, the
//! fuzzer and tests drive the same code. The connection streams SET_TENSOR(_2D) itself (to avoid
//! buffering large uploads), runs `Outcome::Compute` off the async runtime, and does the network part
//! of the COMM_* outcomes.

use super::SessionError;
use super::graphs::StoredGraph;
use super::session::{AllreduceTarget, Session};
use crate::proto::{CommInit, Command, ProtoError, Request, Response};

/// What the caller must do after `Session::handle`.
pub enum Outcome {
    /// Fire-and-forget command: nothing to send.
    Done,
    /// Send this reply.
    Reply(Response),
    /// Run the graph on `device`; then, if `store` names a key, keep it for GRAPH_RECOMPUTE
    /// (`Session::store_graph`).
    Compute {
        device: usize,
        graph: StoredGraph,
        store: Option<u64>,
    },
    /// COMM_INIT with a valid device: join the pairwise communicator, reply `ok`.
    CommInit(CommInit),
    /// COMM_ALLREDUCE: sum the tensor with the peer's over the device's communicator.
    CommAllreduce(AllreduceTarget),
    /// COMM_FREE: drop the device's communicator.
    CommFree { device: usize },
}

impl Session {
    /// Handles one request after the handshake. SET_TENSOR's data is written straight to the buffer
    /// here, without the cache. An error means: close the connection.
    pub fn handle(&mut self, req: Request) -> Result<Outcome, SessionError> {
        let reply = match req {
            Request::Hello { .. } => {
                return Err(SessionError::Protocol("HELLO after the handshake".into()));
            }
            Request::DeviceCount => Response::DeviceCount(self.device_count()),
            Request::GetAlignment { device } => Response::Alignment(self.alignment(device)?),
            Request::GetMaxSize { device } => Response::MaxSize(self.max_size(device)?),
            Request::GetDeviceMemory { device } => {
                let (free, total) = self.memory(device)?;
                Response::Memory { free, total }
            }
            Request::AllocBuffer(r) => {
                let (handle, size) = self.alloc(r)?;
                Response::Buffer { handle, size }
            }
            Request::BufferGetBase { handle } => Response::Base(self.buffer_base(handle)?),
            Request::FreeBuffer { handle } => {
                self.free(handle)?;
                return Ok(Outcome::Done);
            }
            Request::BufferClear(r) => {
                self.clear(r.handle, r.value)?;
                return Ok(Outcome::Done);
            }
            Request::SetTensor { header, data } => {
                let t = self.set_tensor_target(&header, data.len() as u64)?;
                t.buf.write(t.offset, data)?;
                return Ok(Outcome::Done);
            }
            Request::SetTensorHash(r) => Response::SetTensorHash(self.set_tensor_hash(&r)?),
            Request::GetTensor(r) => Response::Data(self.get_tensor(&r)?),
            Request::CopyTensor(r) => Response::CopyTensor(self.copy_tensor(&r)?),
            Request::MemsetTensor(r) => {
                self.memset(&r)?;
                return Ok(Outcome::Done);
            }
            Request::InitTensor(t) => {
                self.init_tensor(&t)?;
                return Ok(Outcome::Done);
            }
            Request::GetAllocSize(r) => Response::AllocSize(self.alloc_size(&r)?),
            Request::GraphCompute(wg) => {
                let wire = wire_size(&wg);
                let (device, graph) = self.prepare_graph(&wg, wire)?;
                let store = self.graph_key(device, wg.uid);
                return Ok(Outcome::Compute {
                    device,
                    graph,
                    store,
                });
            }
            Request::GraphRecompute(r) => {
                return Ok(Outcome::Compute {
                    device: r.device as usize,
                    graph: self.stored_graph(r.device, r.uid)?,
                    store: None,
                });
            }
            Request::SetTensor2d { header, data } => {
                self.set_tensor_2d(&header, data)?;
                return Ok(Outcome::Done);
            }
            Request::GetTensor2d(r) => Response::Data(self.get_tensor_2d(&r)?),
            Request::CommInit(r) => {
                // The reference answers "not ok" (rather than closing) for a bad device or world.
                if (r.device as usize) >= self.device_count() as usize
                    || r.world != 2
                    || r.rank >= 2
                {
                    tracing::warn!(
                        device = r.device,
                        rank = r.rank,
                        world = r.world,
                        "COMM_INIT refused: only world 2 on a served device is supported"
                    );
                    Response::CommInit(false)
                } else {
                    return Ok(Outcome::CommInit(r));
                }
            }
            Request::CommAllreduce(r) => {
                return Ok(Outcome::CommAllreduce(self.allreduce_target(&r)?));
            }
            Request::CommFree { device } => {
                if device >= self.device_count() {
                    return Err(SessionError::BadDevice(device));
                }
                return Ok(Outcome::CommFree {
                    device: device as usize,
                });
            }
        };
        Ok(Outcome::Reply(reply))
    }

    /// Decodes a whole payload (`cmd` byte, payload) in this session's major and handles it.
    pub fn handle_bytes(&mut self, cmd: u8, p: &[u8]) -> Result<Outcome, SessionError> {
        let major = self.major();
        let cmd = Command::decode(cmd, major).ok_or(ProtoError::UnknownCommand(cmd))?;
        self.handle(Request::decode(cmd, p, major)?)
    }

    /// `handle_bytes` with graphs computed on the calling thread and no network: COMM_INIT answers
    /// "not ok", so no communicator ever exists. The reply, if the command has one.
    pub fn handle_blocking(&mut self, cmd: u8, p: &[u8]) -> Result<Option<Vec<u8>>, SessionError> {
        match self.handle_bytes(cmd, p)? {
            Outcome::Done | Outcome::CommFree { .. } => Ok(None),
            Outcome::Reply(r) => Ok(Some(r.encode())),
            Outcome::CommInit(_) => Ok(Some(Response::CommInit(false).encode())),
            Outcome::CommAllreduce(t) => Err(SessionError::Protocol(format!(
                "COMM_ALLREDUCE: no communicator for device {}",
                t.device
            ))),
            Outcome::Compute {
                device,
                graph,
                store,
            } => {
                let dev = self
                    .device_arc(device)
                    .ok_or(SessionError::BadDevice(device as u32))?;
                dev.compute_cached(&graph.graph, &graph.buffers, &graph.cache)?;
                if let Some(key) = store {
                    self.store_graph(device, key, graph)?;
                }
                Ok(None)
            }
        }
    }
}

/// A graph's size on the wire, for the stored-graph bound (the payload itself is gone by then).
fn wire_size(wg: &crate::proto::WireGraph) -> usize {
    16 + 8 * wg.node_ids.len() + crate::proto::RPC_TENSOR_SIZE * wg.tensors.len()
}
