//! Builds LAME 3.100's encoder library with the `cc` crate.
//!
//! Upstream mp3lame-sys runs LAME's autotools build. Two things in that
//! build cost recengine speed, and this script exists to fix them:
//!
//! - LAME's SSE code (`vector/xmm_quantize_sub.c`: `init_xrpow_core_sse`,
//!   `fht_SSE2`) is compiled but only *selected* when `MIN_ARCH_SSE` is
//!   defined (or on MSVC x64), and `configure` never defines it for GCC or
//!   Clang. Every x86_64 CPU has SSE2, so it is defined here.
//! - `configure` needs `sh` and `make` and takes most of this crate's
//!   build time; a list of files and one `config.h` do the same job.
//!
//! The C sources under `lame-3.100/` are LAME 3.100's, unmodified.

use std::path::PathBuf;

const LAME: &str = "lame-3.100";

/// The encoder library's sources (`libmp3lame_la_SOURCES` in LAME's
/// `libmp3lame/Makefile.am`, without the mpglib decoder glue).
const SOURCES: &[&str] = &[
    "VbrTag.c",
    "bitstream.c",
    "encoder.c",
    "fft.c",
    "gain_analysis.c",
    "id3tag.c",
    "lame.c",
    "newmdct.c",
    "presets.c",
    "psymodel.c",
    "quantize.c",
    "quantize_pvt.c",
    "reservoir.c",
    "set_get.c",
    "tables.c",
    "takehiro.c",
    "util.c",
    "vbrquantize.c",
    "version.c",
];

/// What LAME's `configure` defines on Linux and macOS and the library's
/// sources read (the rest of its config.h is for the command-line frontend).
const CONFIG_H: &str = "\
#ifndef LAME_CONFIG_H
#define LAME_CONFIG_H
#define STDC_HEADERS 1
#define HAVE_STDINT_H 1
#define HAVE_INTTYPES_H 1
#define HAVE_ERRNO_H 1
#define HAVE_FCNTL_H 1
#define HAVE_STRCHR 1
#define HAVE_MEMCPY 1
#define TAKEHIRO_IEEE754_HACK 1
#define USE_FAST_LOG 1
#define LAME_LIBRARY_BUILD 1
typedef float ieee754_float32_t;
typedef double ieee754_float64_t;
#endif
";

fn main() {
    if std::env::var_os("CARGO_FEATURE_DECODER").is_some() {
        panic!("recengine's vendored mp3lame-sys builds LAME's encoder only; the `decoder` feature (mpglib) is not vendored");
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let config_dir = out.join("config");
    std::fs::create_dir_all(&config_dir).expect("create OUT_DIR/config");
    std::fs::write(config_dir.join("config.h"), CONFIG_H).expect("write config.h");

    let lib = PathBuf::from(LAME).join("libmp3lame");
    let mut build = cc::Build::new();
    build
        .include(&config_dir)
        .include(PathBuf::from(LAME).join("include"))
        .include(&lib)
        .define("HAVE_CONFIG_H", None)
        // LAME's `assert`s guard its own invariants in its inner loops
        // (four per bit-writing call); one firing would abort the whole
        // daemon, every recording with it. Compiled out, as release builds
        // of LAME do (VLC, FFmpeg's builds pass -DNDEBUG).
        .define("NDEBUG", None)
        .warnings(false);
    for source in SOURCES {
        build.file(lib.join(source));
    }
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch == "x86_64" {
        // SSE and SSE2 are part of the x86_64 baseline.
        build
            .define("HAVE_XMMINTRIN_H", None)
            .define("MIN_ARCH_SSE", None)
            .file(lib.join("vector").join("xmm_quantize_sub.c"))
            .include(lib.join("vector"));
    }
    build.compile("mp3lame");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={LAME}");
}
