//! `ggml_op`, `ggml_unary_op` and `ggml_glu_op` with their v7 numbering (PROTOCOL.md Appendix B).

/// `ggml_op`: travels as a raw u32 in every tensor (GGML_OP_COUNT = 101).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Op {
    None = 0,
    Dup = 1,
    Add = 2,
    AddId = 3,
    Add1 = 4,
    Acc = 5,
    Sub = 6,
    Mul = 7,
    Div = 8,
    Sqr = 9,
    Sqrt = 10,
    Log = 11,
    Sin = 12,
    Cos = 13,
    Sum = 14,
    SumRows = 15,
    Cumsum = 16,
    Mean = 17,
    Argmax = 18,
    CountEqual = 19,
    Repeat = 20,
    RepeatBack = 21,
    Concat = 22,
    SiluBack = 23,
    Norm = 24,
    RmsNorm = 25,
    RmsNormBack = 26,
    GroupNorm = 27,
    L2Norm = 28,
    MulMat = 29,
    MulMatId = 30,
    OutProd = 31,
    Scale = 32,
    Set = 33,
    Cpy = 34,
    Cont = 35,
    Reshape = 36,
    View = 37,
    Permute = 38,
    Transpose = 39,
    GetRows = 40,
    GetRowsBack = 41,
    SetRows = 42,
    Diag = 43,
    DiagMaskInf = 44,
    DiagMaskZero = 45,
    SoftMax = 46,
    SoftMaxBack = 47,
    Rope = 48,
    RopeBack = 49,
    Clamp = 50,
    ConvTranspose1d = 51,
    Im2col = 52,
    Im2colBack = 53,
    Im2col3d = 54,
    Col2im1d = 55,
    Conv2d = 56,
    Conv3d = 57,
    Conv2dDw = 58,
    ConvTranspose2d = 59,
    Pool1d = 60,
    Pool2d = 61,
    Pool2dBack = 62,
    Upscale = 63,
    Pad = 64,
    PadReflect1d = 65,
    Roll = 66,
    Arange = 67,
    TimestepEmbedding = 68,
    Argsort = 69,
    TopK = 70,
    LeakyRelu = 71,
    Tri = 72,
    Fill = 73,
    FlashAttnExt = 74,
    FlashAttnBack = 75,
    SsmConv = 76,
    SsmScan = 77,
    WinPart = 78,
    WinUnpart = 79,
    GetRelPos = 80,
    AddRelPos = 81,
    RwkvWkv6 = 82,
    GatedLinearAttn = 83,
    RwkvWkv7 = 84,
    SolveTri = 85,
    GatedDeltaNet = 86,
    LightningIndexer = 87,
    Dsv4HcComb = 88,
    Dsv4HcPre = 89,
    Dsv4HcPost = 90,
    Unary = 91,
    MapCustom1 = 92,
    MapCustom2 = 93,
    MapCustom3 = 94,
    Custom = 95,
    CrossEntropyLoss = 96,
    CrossEntropyLossBack = 97,
    OptStepAdamw = 98,
    OptStepSgd = 99,
    Glu = 100,
}

impl Op {
    /// Number of variants (the wire count).
    pub const COUNT: u32 = 101;
    const ALL: [Op; 101] = [
        Self::None,
        Self::Dup,
        Self::Add,
        Self::AddId,
        Self::Add1,
        Self::Acc,
        Self::Sub,
        Self::Mul,
        Self::Div,
        Self::Sqr,
        Self::Sqrt,
        Self::Log,
        Self::Sin,
        Self::Cos,
        Self::Sum,
        Self::SumRows,
        Self::Cumsum,
        Self::Mean,
        Self::Argmax,
        Self::CountEqual,
        Self::Repeat,
        Self::RepeatBack,
        Self::Concat,
        Self::SiluBack,
        Self::Norm,
        Self::RmsNorm,
        Self::RmsNormBack,
        Self::GroupNorm,
        Self::L2Norm,
        Self::MulMat,
        Self::MulMatId,
        Self::OutProd,
        Self::Scale,
        Self::Set,
        Self::Cpy,
        Self::Cont,
        Self::Reshape,
        Self::View,
        Self::Permute,
        Self::Transpose,
        Self::GetRows,
        Self::GetRowsBack,
        Self::SetRows,
        Self::Diag,
        Self::DiagMaskInf,
        Self::DiagMaskZero,
        Self::SoftMax,
        Self::SoftMaxBack,
        Self::Rope,
        Self::RopeBack,
        Self::Clamp,
        Self::ConvTranspose1d,
        Self::Im2col,
        Self::Im2colBack,
        Self::Im2col3d,
        Self::Col2im1d,
        Self::Conv2d,
        Self::Conv3d,
        Self::Conv2dDw,
        Self::ConvTranspose2d,
        Self::Pool1d,
        Self::Pool2d,
        Self::Pool2dBack,
        Self::Upscale,
        Self::Pad,
        Self::PadReflect1d,
        Self::Roll,
        Self::Arange,
        Self::TimestepEmbedding,
        Self::Argsort,
        Self::TopK,
        Self::LeakyRelu,
        Self::Tri,
        Self::Fill,
        Self::FlashAttnExt,
        Self::FlashAttnBack,
        Self::SsmConv,
        Self::SsmScan,
        Self::WinPart,
        Self::WinUnpart,
        Self::GetRelPos,
        Self::AddRelPos,
        Self::RwkvWkv6,
        Self::GatedLinearAttn,
        Self::RwkvWkv7,
        Self::SolveTri,
        Self::GatedDeltaNet,
        Self::LightningIndexer,
        Self::Dsv4HcComb,
        Self::Dsv4HcPre,
        Self::Dsv4HcPost,
        Self::Unary,
        Self::MapCustom1,
        Self::MapCustom2,
        Self::MapCustom3,
        Self::Custom,
        Self::CrossEntropyLoss,
        Self::CrossEntropyLossBack,
        Self::OptStepAdamw,
        Self::OptStepSgd,
        Self::Glu,
    ];
    const NAMES: [&'static str; 101] = [
        "NONE",
        "DUP",
        "ADD",
        "ADD_ID",
        "ADD1",
        "ACC",
        "SUB",
        "MUL",
        "DIV",
        "SQR",
        "SQRT",
        "LOG",
        "SIN",
        "COS",
        "SUM",
        "SUM_ROWS",
        "CUMSUM",
        "MEAN",
        "ARGMAX",
        "COUNT_EQUAL",
        "REPEAT",
        "REPEAT_BACK",
        "CONCAT",
        "SILU_BACK",
        "NORM",
        "RMS_NORM",
        "RMS_NORM_BACK",
        "GROUP_NORM",
        "L2_NORM",
        "MUL_MAT",
        "MUL_MAT_ID",
        "OUT_PROD",
        "SCALE",
        "SET",
        "CPY",
        "CONT",
        "RESHAPE",
        "VIEW",
        "PERMUTE",
        "TRANSPOSE",
        "GET_ROWS",
        "GET_ROWS_BACK",
        "SET_ROWS",
        "DIAG",
        "DIAG_MASK_INF",
        "DIAG_MASK_ZERO",
        "SOFT_MAX",
        "SOFT_MAX_BACK",
        "ROPE",
        "ROPE_BACK",
        "CLAMP",
        "CONV_TRANSPOSE_1D",
        "IM2COL",
        "IM2COL_BACK",
        "IM2COL_3D",
        "COL2IM_1D",
        "CONV_2D",
        "CONV_3D",
        "CONV_2D_DW",
        "CONV_TRANSPOSE_2D",
        "POOL_1D",
        "POOL_2D",
        "POOL_2D_BACK",
        "UPSCALE",
        "PAD",
        "PAD_REFLECT_1D",
        "ROLL",
        "ARANGE",
        "TIMESTEP_EMBEDDING",
        "ARGSORT",
        "TOP_K",
        "LEAKY_RELU",
        "TRI",
        "FILL",
        "FLASH_ATTN_EXT",
        "FLASH_ATTN_BACK",
        "SSM_CONV",
        "SSM_SCAN",
        "WIN_PART",
        "WIN_UNPART",
        "GET_REL_POS",
        "ADD_REL_POS",
        "RWKV_WKV6",
        "GATED_LINEAR_ATTN",
        "RWKV_WKV7",
        "SOLVE_TRI",
        "GATED_DELTA_NET",
        "LIGHTNING_INDEXER",
        "DSV4_HC_COMB",
        "DSV4_HC_PRE",
        "DSV4_HC_POST",
        "UNARY",
        "MAP_CUSTOM1",
        "MAP_CUSTOM2",
        "MAP_CUSTOM3",
        "CUSTOM",
        "CROSS_ENTROPY_LOSS",
        "CROSS_ENTROPY_LOSS_BACK",
        "OPT_STEP_ADAMW",
        "OPT_STEP_SGD",
        "GLU",
    ];

    /// Decodes a wire id; `None` when out of range.
    pub fn from_u32(id: u32) -> Option<Self> {
        Self::ALL.get(id as usize).copied()
    }

    /// ggml's upper-case name, for logs.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl Op {
    /// Ops that only describe memory (their `data` already points at the right bytes): never executed.
    pub fn is_view(self) -> bool {
        matches!(
            self,
            Op::None | Op::Reshape | Op::View | Op::Permute | Op::Transpose
        )
    }

    /// Ops whose `op_params` carry client function pointers: meaningless on a server.
    pub fn is_custom(self) -> bool {
        matches!(
            self,
            Op::MapCustom1 | Op::MapCustom2 | Op::MapCustom3 | Op::Custom
        )
    }
}

/// `ggml_unary_op`, in `op_params[0]` of UNARY.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum UnaryOp {
    Abs = 0,
    Sgn = 1,
    Neg = 2,
    Step = 3,
    Tanh = 4,
    Elu = 5,
    Relu = 6,
    Sigmoid = 7,
    Gelu = 8,
    GeluQuick = 9,
    Silu = 10,
    Hardswish = 11,
    Hardsigmoid = 12,
    Exp = 13,
    Expm1 = 14,
    Softplus = 15,
    GeluErf = 16,
    Xielu = 17,
    Floor = 18,
    Ceil = 19,
    Round = 20,
    Trunc = 21,
}

impl UnaryOp {
    /// Number of variants (the wire count).
    pub const COUNT: u32 = 22;
    const ALL: [UnaryOp; 22] = [
        Self::Abs,
        Self::Sgn,
        Self::Neg,
        Self::Step,
        Self::Tanh,
        Self::Elu,
        Self::Relu,
        Self::Sigmoid,
        Self::Gelu,
        Self::GeluQuick,
        Self::Silu,
        Self::Hardswish,
        Self::Hardsigmoid,
        Self::Exp,
        Self::Expm1,
        Self::Softplus,
        Self::GeluErf,
        Self::Xielu,
        Self::Floor,
        Self::Ceil,
        Self::Round,
        Self::Trunc,
    ];
    const NAMES: [&'static str; 22] = [
        "ABS",
        "SGN",
        "NEG",
        "STEP",
        "TANH",
        "ELU",
        "RELU",
        "SIGMOID",
        "GELU",
        "GELU_QUICK",
        "SILU",
        "HARDSWISH",
        "HARDSIGMOID",
        "EXP",
        "EXPM1",
        "SOFTPLUS",
        "GELU_ERF",
        "XIELU",
        "FLOOR",
        "CEIL",
        "ROUND",
        "TRUNC",
    ];

    /// Decodes a wire id; `None` when out of range.
    pub fn from_u32(id: u32) -> Option<Self> {
        Self::ALL.get(id as usize).copied()
    }

    /// ggml's upper-case name, for logs.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}
/// `ggml_glu_op`, in `op_params[0]` of GLU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum GluOp {
    Reglu = 0,
    Geglu = 1,
    Swiglu = 2,
    SwigluOai = 3,
    GegluErf = 4,
    GegluQuick = 5,
    SwigluClamp = 6,
}

impl GluOp {
    /// Number of variants (the wire count).
    pub const COUNT: u32 = 7;
    const ALL: [GluOp; 7] = [
        Self::Reglu,
        Self::Geglu,
        Self::Swiglu,
        Self::SwigluOai,
        Self::GegluErf,
        Self::GegluQuick,
        Self::SwigluClamp,
    ];
    const NAMES: [&'static str; 7] = [
        "REGLU",
        "GEGLU",
        "SWIGLU",
        "SWIGLU_OAI",
        "GEGLU_ERF",
        "GEGLU_QUICK",
        "SWIGLU_CLAMP",
    ];

    /// Decodes a wire id; `None` when out of range.
    pub fn from_u32(id: u32) -> Option<Self> {
        Self::ALL.get(id as usize).copied()
    }

    /// ggml's upper-case name, for logs.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_matches_v7() {
        assert_eq!(Op::COUNT, 101);
        assert_eq!(Op::from_u32(29), Some(Op::MulMat));
        assert_eq!(Op::from_u32(74), Some(Op::FlashAttnExt));
        assert_eq!(Op::from_u32(91), Some(Op::Unary));
        assert_eq!(Op::from_u32(100), Some(Op::Glu));
        assert_eq!(Op::from_u32(101), None);
        assert_eq!(Op::Glu.name(), "GLU");
        assert_eq!(UnaryOp::from_u32(21), Some(UnaryOp::Trunc));
        assert_eq!(UnaryOp::from_u32(22), None);
        assert_eq!(GluOp::from_u32(6), Some(GluOp::SwigluClamp));
        assert!(Op::Custom.is_custom() && Op::Permute.is_view() && !Op::Cpy.is_view());
    }
}
