//! Compiles every CUDA kernel family with NVRTC for the given architectures into a PTX cache folder,
//! under the names the CUDA device looks for. A machine with the NVIDIA driver but no libnvrtc then
//! serves CUDA with `GGRPC_CUDA_CACHE` pointing at the folder (`scripts/gpu-bench.sh pack` does
//! this for the lent GPU machines).
//!
//! ```sh
//! LD_LIBRARY_PATH=target/cuda-tools/nvidia/cuda_nvrtc/lib \
//!   cargo run --release --example cuda_ptx -- --out target/gpu-bench/cuda-cache --arch 80,86,89,90
//! ```

use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Fill a CUDA PTX cache folder for machines without libnvrtc")]
struct Args {
    /// The cache folder to write
    #[arg(long)]
    out: std::path::PathBuf,
    /// Architectures (compute capability × 10), comma-separated
    #[arg(long, value_delimiter = ',', default_value = "80,86,89,90")]
    arch: Vec<u32>,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let n = ggrpc::device::cuda::nvrtc::fill_cache(&args.out, &args.arch)?;
    println!("{n} PTX files in {}", args.out.display());
    Ok(())
}
