//! Every WGSL file parses, and every kernel source (common helpers + family file) validates with naga.
//! Needs no adapter.

use crate::device::wgpu::kernels::Source;

fn validate(name: &str, code: &str) {
    let module = naga::front::wgsl::parse_str(code)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(code)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(code)));
}

#[test]
fn every_kernel_source_validates() {
    for s in Source::ALL {
        validate(&format!("{s:?}"), &s.code());
    }
}

#[test]
fn every_shader_file_is_used_and_parses() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let all: Vec<String> = Source::ALL.iter().map(|s| s.code()).collect();
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "wgsl") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        naga::front::wgsl::parse_str(&text)
            .or_else(|e| {
                // Snippets that use another file's bindings only parse as part of a source.
                if all.iter().any(|c| c.contains(&text)) {
                    Ok(naga::Module::default())
                } else {
                    Err(e)
                }
            })
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&text)));
        assert!(
            all.iter().any(|c| c.contains(text.trim())),
            "{} is not part of any kernel source",
            path.display()
        );
        n += 1;
    }
    // One file per source, plus the shared common.wgsl, exact.wgsl, quant.wgsl and
    // act_quant_block.wgsl, norm.wgsl under both norm sources, MUL_MAT's and FLASH_ATTN_EXT's
    // further files.
    assert_eq!(n, Source::ALL.len() + 8, "shader files");
}
