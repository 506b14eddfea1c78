//! One typed request and one typed response per command, shared by the server and the client: the
//! command byte is decoded and the length checked once (`frame_header`), the payload once (`decode`).

use super::request::Out;
use super::{
    AllocBuffer, BufferClear, CONN_CAPS_SIZE, CommAllreduce, CommInit, Command, CopyTensor,
    GetAllocSize, GetTensor, GraphRecompute, Major, MemsetTensor, ProtoError, SetTensorHash,
    SetTensorHeader, Tensor2d, WireGraph, WireTensor, u8_at, u32_at, u64_at,
};

/// A request, its payload decoded. SET_TENSOR and SET_TENSOR_2D borrow their data (the server
/// streams large ones instead and decodes only the header).
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // decoded once per request and moved once: boxing buys nothing
pub enum Request<'a> {
    Hello {
        caps: [u8; CONN_CAPS_SIZE],
    },
    DeviceCount,
    AllocBuffer(AllocBuffer),
    GetAlignment {
        device: u32,
    },
    GetMaxSize {
        device: u32,
    },
    BufferGetBase {
        handle: u64,
    },
    FreeBuffer {
        handle: u64,
    },
    BufferClear(BufferClear),
    SetTensor {
        header: SetTensorHeader,
        data: &'a [u8],
    },
    SetTensorHash(SetTensorHash),
    GetTensor(GetTensor),
    CopyTensor(CopyTensor),
    GraphCompute(WireGraph),
    GetDeviceMemory {
        device: u32,
    },
    InitTensor(WireTensor),
    GetAllocSize(GetAllocSize),
    GraphRecompute(GraphRecompute),
    MemsetTensor(MemsetTensor),
    SetTensor2d {
        header: Tensor2d,
        data: &'a [u8],
    },
    GetTensor2d(Tensor2d),
    CommInit(CommInit),
    CommAllreduce(CommAllreduce),
    CommFree {
        device: u32,
    },
}

/// Decodes a request header (`u8 cmd | u64 len`) in `major`: a known command, and for fixed-size
/// requests the exact length. Everything else in the payload is checked by `Request::decode`.
pub fn frame_header(byte: u8, len: u64, major: Major) -> Result<Command, ProtoError> {
    let cmd = Command::decode(byte, major).ok_or(ProtoError::UnknownCommand(byte))?;
    expect_len(cmd, len, major)?;
    Ok(cmd)
}

/// Checks that a fixed-size payload has exactly the expected length.
pub fn expect_len(cmd: Command, payload_len: u64, major: Major) -> Result<(), ProtoError> {
    match cmd.fixed_payload_len(major) {
        Some(n) if n as u64 != payload_len => Err(ProtoError::Length {
            cmd: cmd.name(),
            expected: n as u64,
            got: payload_len,
        }),
        _ => Ok(()),
    }
}

fn short(need: usize, got: usize) -> ProtoError {
    ProtoError::Short { need, got }
}

impl<'a> Request<'a> {
    /// Decodes a whole payload of `cmd` (length already checked by `frame_header`, and checked again).
    pub fn decode(cmd: Command, p: &'a [u8], major: Major) -> Result<Self, ProtoError> {
        if !cmd.exists_in(major) {
            return Err(ProtoError::UnknownCommand(cmd as u8));
        }
        expect_len(cmd, p.len() as u64, major)?;
        use Command as C;
        Ok(match cmd {
            C::Hello => {
                let caps = p.try_into().map_err(|_| short(CONN_CAPS_SIZE, p.len()))?;
                Request::Hello { caps }
            }
            C::DeviceCount => Request::DeviceCount,
            C::AllocBuffer => Request::AllocBuffer(AllocBuffer::parse(p)?),
            C::GetAlignment => Request::GetAlignment {
                device: u32_at(p, 0)?,
            },
            C::GetMaxSize => Request::GetMaxSize {
                device: u32_at(p, 0)?,
            },
            C::BufferGetBase => Request::BufferGetBase {
                handle: u64_at(p, 0)?,
            },
            C::FreeBuffer => Request::FreeBuffer {
                handle: u64_at(p, 0)?,
            },
            C::BufferClear => Request::BufferClear(BufferClear::parse(p)?),
            C::SetTensor => Request::SetTensor {
                header: SetTensorHeader::parse(p)?,
                data: p.get(SetTensorHeader::SIZE..).unwrap_or_default(),
            },
            C::SetTensorHash => Request::SetTensorHash(SetTensorHash::parse(p)?),
            C::GetTensor => Request::GetTensor(GetTensor::parse(p)?),
            C::CopyTensor => Request::CopyTensor(CopyTensor::parse(p)?),
            C::GraphCompute => Request::GraphCompute(WireGraph::parse(p, major)?),
            C::GetDeviceMemory => Request::GetDeviceMemory {
                device: u32_at(p, 0)?,
            },
            C::InitTensor => Request::InitTensor(WireTensor::parse(p)?),
            C::GetAllocSize => Request::GetAllocSize(GetAllocSize::parse(p)?),
            C::GraphRecompute => Request::GraphRecompute(GraphRecompute {
                device: u32_at(p, 0)?,
                uid: if major >= Major::V8 { u64_at(p, 4)? } else { 0 },
            }),
            C::MemsetTensor => Request::MemsetTensor(MemsetTensor::parse(p)?),
            C::SetTensor2d => Request::SetTensor2d {
                header: Tensor2d::parse(p)?,
                data: p.get(Tensor2d::SIZE..).unwrap_or_default(),
            },
            C::GetTensor2d => Request::GetTensor2d(Tensor2d::parse(p)?),
            C::CommInit => Request::CommInit(CommInit::parse(p)?),
            C::CommAllreduce => Request::CommAllreduce(CommAllreduce::parse(p)?),
            C::CommFree => Request::CommFree {
                device: u32_at(p, 0)?,
            },
        })
    }

    pub fn command(&self) -> Command {
        use Command as C;
        match self {
            Request::Hello { .. } => C::Hello,
            Request::DeviceCount => C::DeviceCount,
            Request::AllocBuffer(_) => C::AllocBuffer,
            Request::GetAlignment { .. } => C::GetAlignment,
            Request::GetMaxSize { .. } => C::GetMaxSize,
            Request::BufferGetBase { .. } => C::BufferGetBase,
            Request::FreeBuffer { .. } => C::FreeBuffer,
            Request::BufferClear(_) => C::BufferClear,
            Request::SetTensor { .. } => C::SetTensor,
            Request::SetTensorHash(_) => C::SetTensorHash,
            Request::GetTensor(_) => C::GetTensor,
            Request::CopyTensor(_) => C::CopyTensor,
            Request::GraphCompute(_) => C::GraphCompute,
            Request::GetDeviceMemory { .. } => C::GetDeviceMemory,
            Request::InitTensor(_) => C::InitTensor,
            Request::GetAllocSize(_) => C::GetAllocSize,
            Request::GraphRecompute(_) => C::GraphRecompute,
            Request::MemsetTensor(_) => C::MemsetTensor,
            Request::SetTensor2d { .. } => C::SetTensor2d,
            Request::GetTensor2d(_) => C::GetTensor2d,
            Request::CommInit(_) => C::CommInit,
            Request::CommAllreduce(_) => C::CommAllreduce,
            Request::CommFree { .. } => C::CommFree,
        }
    }

    /// The payload as `major` lays it out.
    pub fn encode(&self, major: Major) -> Vec<u8> {
        let o = Out::default();
        match self {
            Request::Hello { caps } => caps.to_vec(),
            Request::DeviceCount => Vec::new(),
            Request::AllocBuffer(r) => r.encode(),
            Request::GetAlignment { device }
            | Request::GetMaxSize { device }
            | Request::GetDeviceMemory { device }
            | Request::CommFree { device } => o.u32(*device).0,
            Request::BufferGetBase { handle } | Request::FreeBuffer { handle } => o.u64(*handle).0,
            Request::BufferClear(r) => r.encode(),
            Request::SetTensor { header, data } => o.bytes(&header.encode()).bytes(data).0,
            Request::SetTensorHash(r) => r.encode(),
            Request::GetTensor(r) => r.encode(),
            Request::CopyTensor(r) => r.encode(),
            Request::GraphCompute(g) => g.encode(major),
            Request::InitTensor(t) => t.encode().to_vec(),
            Request::GetAllocSize(r) => r.encode(),
            Request::GraphRecompute(r) if major >= Major::V8 => o.u32(r.device).u64(r.uid).0,
            Request::GraphRecompute(r) => o.u32(r.device).0,
            Request::MemsetTensor(r) => r.encode(),
            Request::SetTensor2d { header, data } => o.bytes(&header.encode()).bytes(data).0,
            Request::GetTensor2d(r) => r.encode(),
            Request::CommInit(r) => r.encode(),
            Request::CommAllreduce(r) => r.encode(),
        }
    }

    /// The whole frame: `u8 cmd | u64 len | payload`.
    pub fn frame(&self, major: Major) -> Vec<u8> {
        let payload = self.encode(major);
        Out::default()
            .u8(self.command() as u8)
            .u64(payload.len() as u64)
            .bytes(&payload)
            .0
    }
}

/// A reply payload (commands without one have no variant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// `major, minor, patch, padding` and our caps: always zero (we never offer RDMA).
    Hello {
        major: u8,
        minor: u8,
        patch: u8,
    },
    DeviceCount(u32),
    /// ALLOC_BUFFER: `(0, 0)` when the device refuses.
    Buffer {
        handle: u64,
        size: u64,
    },
    Alignment(u64),
    MaxSize(u64),
    Base(u64),
    SetTensorHash(bool),
    /// GET_TENSOR and GET_TENSOR_2D: the bytes asked for.
    Data(Vec<u8>),
    CopyTensor(bool),
    Memory {
        free: u64,
        total: u64,
    },
    AllocSize(u64),
    CommInit(bool),
}

impl Response {
    pub fn hello(major: Major) -> Self {
        let (major, minor, patch) = major.version();
        Response::Hello {
            major,
            minor,
            patch,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let o = Out::default();
        match self {
            Response::Hello {
                major,
                minor,
                patch,
            } => {
                o.u8(*major)
                    .u8(*minor)
                    .u8(*patch)
                    .u8(0)
                    .bytes(&[0; CONN_CAPS_SIZE])
                    .0
            }
            Response::DeviceCount(n) => o.u32(*n).0,
            Response::Buffer { handle, size } => o.u64(*handle).u64(*size).0,
            Response::Alignment(v) | Response::MaxSize(v) | Response::Base(v) => o.u64(*v).0,
            Response::AllocSize(v) => o.u64(*v).0,
            Response::SetTensorHash(b) | Response::CopyTensor(b) | Response::CommInit(b) => {
                o.u8(*b as u8).0
            }
            Response::Data(d) => d.clone(),
            Response::Memory { free, total } => o.u64(*free).u64(*total).0,
        }
    }

    /// The reply length the client must see for `req` (as the reference client checks it exactly),
    /// or `None` when the command has no reply.
    pub fn expected_len(req: &Request) -> Option<u64> {
        Some(match req {
            Request::Hello { .. } => 4 + CONN_CAPS_SIZE as u64,
            Request::DeviceCount => 4,
            Request::AllocBuffer(_) | Request::GetDeviceMemory { .. } => 16,
            Request::GetAlignment { .. }
            | Request::GetMaxSize { .. }
            | Request::BufferGetBase { .. }
            | Request::GetAllocSize(_) => 8,
            Request::SetTensorHash(_) | Request::CopyTensor(_) | Request::CommInit(_) => 1,
            Request::GetTensor(r) => r.size,
            Request::GetTensor2d(r) => r.size.saturating_mul(r.n_copies),
            _ => return None,
        })
    }

    /// Decodes the reply to `req` (the client side); its length must be `expected_len`.
    pub fn decode(req: &Request, p: &[u8]) -> Result<Self, ProtoError> {
        let want = Self::expected_len(req).ok_or(ProtoError::Invalid(format!(
            "{} has no reply",
            req.command().name()
        )))?;
        if p.len() as u64 != want {
            return Err(ProtoError::Length {
                cmd: req.command().name(),
                expected: want,
                got: p.len() as u64,
            });
        }
        Ok(match req {
            Request::Hello { .. } => Response::Hello {
                major: u8_at(p, 0)?,
                minor: u8_at(p, 1)?,
                patch: u8_at(p, 2)?,
            },
            Request::DeviceCount => Response::DeviceCount(u32_at(p, 0)?),
            Request::AllocBuffer(_) => Response::Buffer {
                handle: u64_at(p, 0)?,
                size: u64_at(p, 8)?,
            },
            Request::GetDeviceMemory { .. } => Response::Memory {
                free: u64_at(p, 0)?,
                total: u64_at(p, 8)?,
            },
            Request::GetAlignment { .. } => Response::Alignment(u64_at(p, 0)?),
            Request::GetMaxSize { .. } => Response::MaxSize(u64_at(p, 0)?),
            Request::BufferGetBase { .. } => Response::Base(u64_at(p, 0)?),
            Request::GetAllocSize(_) => Response::AllocSize(u64_at(p, 0)?),
            Request::SetTensorHash(_) => Response::SetTensorHash(u8_at(p, 0)? != 0),
            Request::CopyTensor(_) => Response::CopyTensor(u8_at(p, 0)? != 0),
            Request::CommInit(_) => Response::CommInit(u8_at(p, 0)? != 0),
            _ => Response::Data(p.to_vec()),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn samples() -> Vec<Request<'static>> {
        let t = WireTensor {
            id: 3,
            ne: [4, 1, 1, 1],
            nb: [4, 16, 16, 16],
            ..Default::default()
        };
        let d2 = Tensor2d {
            tensor: t.clone(),
            offset: 4,
            size: 4,
            n_copies: 2,
            stride: 8,
        };
        vec![
            Request::Hello { caps: [0; 24] },
            Request::DeviceCount,
            Request::AllocBuffer(AllocBuffer { device: 1, size: 9 }),
            Request::GetAlignment { device: 2 },
            Request::GetMaxSize { device: 2 },
            Request::BufferGetBase { handle: 7 },
            Request::FreeBuffer { handle: 7 },
            Request::BufferClear(BufferClear {
                handle: 7,
                value: 1,
            }),
            Request::SetTensor {
                header: SetTensorHeader {
                    tensor: t.clone(),
                    cache_flag: false,
                    offset: 0,
                },
                data: &[1, 2, 3, 4],
            },
            Request::SetTensorHash(SetTensorHash {
                tensor: t.clone(),
                offset: 0,
                hash: 5,
            }),
            Request::GetTensor(GetTensor {
                tensor: t.clone(),
                offset: 0,
                size: 16,
            }),
            Request::CopyTensor(CopyTensor {
                src: t.clone(),
                dst: t.clone(),
            }),
            Request::GraphCompute(WireGraph {
                device: 0,
                uid: 0,
                node_ids: vec![3],
                tensors: vec![t.clone()],
            }),
            Request::GetDeviceMemory { device: 0 },
            Request::InitTensor(t.clone()),
            Request::GetAllocSize(GetAllocSize {
                device: 0,
                tensor: t.clone(),
                srcs: vec![WireTensor::default(); 10],
            }),
            Request::GraphRecompute(GraphRecompute { device: 0, uid: 0 }),
            Request::MemsetTensor(MemsetTensor {
                tensor: t.clone(),
                offset: 0,
                size: 4,
                value: 9,
            }),
            Request::SetTensor2d {
                header: d2.clone(),
                data: &[7; 8],
            },
            Request::GetTensor2d(d2),
            Request::CommInit(CommInit {
                device: 0,
                rank: 1,
                world: 2,
                port: 51052,
                host: b"10.0.0.2".to_vec(),
            }),
            Request::CommAllreduce(CommAllreduce {
                device: 0,
                tensor: t,
            }),
            Request::CommFree { device: 0 },
        ]
    }

    #[test]
    fn every_request_round_trips_through_its_frame() {
        let all = samples();
        assert_eq!(all.len(), Command::all().count(), "one sample per command");
        for major in Major::ALL {
            for r in all.iter().filter(|r| r.command().exists_in(major)) {
                let f = r.frame(major);
                let len = u64::from_le_bytes(f[1..9].try_into().unwrap());
                let cmd = frame_header(f[0], len, major).unwrap();
                let back = Request::decode(cmd, &f[9..], major).unwrap();
                assert_eq!(&back, r, "{} in {major}", cmd.name());
            }
        }
    }

    #[test]
    fn v8_commands_are_unknown_in_v7() {
        for r in samples()
            .iter()
            .filter(|r| !r.command().exists_in(Major::V7))
        {
            let f = r.frame(Major::V8);
            assert_eq!(
                frame_header(f[0], 0, Major::V7),
                Err(ProtoError::UnknownCommand(f[0]))
            );
        }
        // v8's RECOMPUTE carries the uid; v7's length is refused.
        let r = Request::GraphRecompute(GraphRecompute { device: 1, uid: 42 });
        assert_eq!(r.encode(Major::V8).len(), 12);
        assert!(frame_header(16, 4, Major::V8).is_err());
        assert!(frame_header(16, 12, Major::V7).is_err());
    }

    #[test]
    fn responses_round_trip_with_exact_lengths() {
        for r in samples() {
            let Some(len) = Response::expected_len(&r) else {
                assert!(!r.command().has_response(), "{}", r.command().name());
                continue;
            };
            assert!(r.command().has_response());
            let reply = Response::decode(&r, &vec![1u8; len as usize]).unwrap();
            assert_eq!(reply.encode().len() as u64, len);
            assert_eq!(Response::decode(&r, &reply.encode()).unwrap(), reply);
            assert!(Response::decode(&r, &vec![0u8; len as usize + 1]).is_err());
        }
        let h = Response::hello(Major::V8).encode();
        assert_eq!(h[..4], [8, 0, 0, 0]);
        assert!(h[4..].iter().all(|&b| b == 0));
    }
}
