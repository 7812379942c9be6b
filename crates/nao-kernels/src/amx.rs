//! Intel AMX (Advanced Matrix Extensions) for the prefill GEMM of K-quant weights.
//!
//! An AMX tile multiply (`tdpbusd`) computes a 16 × 16 block of int32 dot products
//! over 64 bytes each — 16 384 multiply-adds — in one instruction, about 16× what an
//! AVX-512 VNNI core does per cycle. Prefill (many tokens against the same weights) is
//! compute-bound, so on CPUs that have it (Sapphire Rapids and later) this is where prompt
//! processing time goes down.
//!
//! This module holds only the machine-level pieces: detection (CPUID plus the Linux
//! permission request every process must make before touching tile data), the tile
//! configuration, and one safe method per tile instruction the GEMM uses. The instructions
//! are emitted with `asm!` because Rust's AMX intrinsics are not stable; the tile registers
//! are invisible to the compiler, which is sound because nothing else in the process uses
//! them and every sequence runs inside one [`Tiles`] scope on one thread.
//!
//! [`gemm`] packs Q4_K weights and activations into tiles and runs the products; [`pack`]
//! has the packing (with AVX-512 twins in `pack_simd`).

pub(crate) mod gemm;
pub(crate) mod pack;
mod pack_simd;

use std::marker::PhantomData;
use std::sync::OnceLock;

/// Whether the AMX GEMM is used in this process: the CPU has AMX-TILE and AMX-INT8, the
/// kernel granted this process the tile-data state, the AVX-512 kernels are in use (the
/// GEMM's epilogue, packers and bit-for-bit twin are AVX-512), and `NAO_AMX=0` is not set.
pub fn enabled() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(detect)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn detect() -> bool {
    /// `arch_prctl` code asking for permission to use an extended state component.
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    /// The AMX tile-data state component.
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    if std::env::var("NAO_AMX").is_ok_and(|v| v == "0") || !crate::dot::avx512_enabled() {
        return false;
    }
    // CPUID leaf 7 exists on every x86-64 CPU that has AVX-512 (checked above).
    let id = std::arch::x86_64::__cpuid_count(7, 0);
    let tile = (id.edx >> 24) & 1 == 1;
    let int8 = (id.edx >> 25) & 1 == 1;
    if !(tile && int8 && os_enabled_tiles()) {
        return false;
    }
    // SAFETY: this arch_prctl request only asks the kernel to enable the AMX state for this
    // process (it fails cleanly on kernels or VMs without it); it touches no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    r == 0
}

/// Whether the OS has the tile state enabled in XCR0 (bits 17 and 18): some VMs list AMX in
/// CPUID without it, and the tile instructions would fault there.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn os_enabled_tiles() -> bool {
    if !std::arch::is_x86_feature_detected!("xsave") {
        return false;
    }
    // SAFETY: XSAVE (and so XGETBV) support was detected just above; reading XCR0 has no
    // side effects.
    let xcr0 = unsafe { std::arch::x86_64::_xgetbv(0) };
    xcr0 & (0b11 << 17) == (0b11 << 17)
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect() -> bool {
    false
}

/// One tile's worth of bytes (16 rows × 64 bytes), aligned to a cache line.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub(crate) struct Tile1K(pub(crate) [u8; 1024]);

impl Tile1K {
    pub(crate) const ZERO: Tile1K = Tile1K([0; 1024]);
}

/// A 16 × 16 int32 result tile, aligned to a cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct CTile(pub(crate) [i32; 256]);

impl CTile {
    pub(crate) const ZERO: CTile = CTile([0; 256]);
}

/// The 64-byte `ldtilecfg` operand (palette 1).
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

/// Configures this thread's tiles (palette 1) with the given bytes per row and rows.
/// Only called where [`enabled`] returned true.
fn load_config(colsb: [u16; 16], rows: [u8; 16]) {
    let cfg = TileConfig {
        palette: 1,
        start_row: 0,
        reserved: [0; 14],
        colsb,
        rows,
    };
    // SAFETY: callers checked `enabled()` (AMX-TILE support and the kernel's permission);
    // `ldtilecfg` reads the 64 bytes of `cfg`, a palette-1 configuration whose shapes are
    // within the palette's limits (at most 16 rows of at most 64 bytes).
    unsafe {
        std::arch::asm!(
            "ldtilecfg [{p}]",
            p = in(reg) &cfg as *const TileConfig,
            options(nostack, readonly, preserves_flags),
        )
    };
}

/// Proof that this thread's tiles 0–7 are configured as 16 rows × 64 bytes; releases them
/// when dropped. Not `Send`: tile state belongs to the thread that configured it.
pub(crate) struct Tiles {
    _not_send: PhantomData<*const ()>,
}

/// Defines a safe method per tile instruction: `$name` for register-only ones.
macro_rules! reg_op {
    ($($name:ident => $asm:literal;)*) => {$(
        #[inline(always)]
        pub(crate) fn $name(&self) {
            // SAFETY: `self` exists only on a thread whose tiles were configured by
            // `Tiles::configure` (16 rows × 64 bytes each), which makes every tile operand
            // of this register-only instruction valid; it reads and writes no memory.
            unsafe { std::arch::asm!($asm, options(nomem, nostack, preserves_flags)) }
        }
    )*};
}

/// Defines `$name(&self, src: &Tile1K)` loading a whole tile from 1 KiB of memory.
macro_rules! load_op {
    ($($name:ident => $t:literal;)*) => {$(
        #[inline(always)]
        pub(crate) fn $name(&self, src: &Tile1K) {
            // SAFETY: the tile is configured as 16 rows × 64 bytes, so with a 64-byte stride
            // `tileloadd` reads exactly the 1024 bytes of `src`, which the borrow keeps alive.
            unsafe {
                std::arch::asm!(
                    concat!("tileloadd tmm", $t, ", [{p} + {s}*1]"),
                    p = in(reg) src.0.as_ptr(),
                    s = in(reg) 64usize,
                    options(nostack, readonly, preserves_flags),
                )
            }
        }
    )*};
}

/// Defines `$name(&self, dst: &mut CTile)` storing a whole int32 tile to 1 KiB of memory.
macro_rules! store_op {
    ($($name:ident => $t:literal;)*) => {$(
        #[inline(always)]
        pub(crate) fn $name(&self, dst: &mut CTile) {
            // SAFETY: the tile is configured as 16 rows × 64 bytes, so with a 64-byte stride
            // `tilestored` writes exactly the 1024 bytes of `dst`, borrowed mutably here.
            unsafe {
                std::arch::asm!(
                    concat!("tilestored [{p} + {s}*1], tmm", $t),
                    p = in(reg) dst.0.as_mut_ptr(),
                    s = in(reg) 64usize,
                    options(nostack, preserves_flags),
                )
            }
        }
    )*};
}

impl Tiles {
    /// Configures tiles 0–7 as 16 rows × 64 bytes on this thread.
    ///
    /// Returns `None` when [`enabled`] is false (the instructions would fault).
    pub(crate) fn configure() -> Option<Tiles> {
        if !enabled() {
            return None;
        }
        load_config(
            [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
            [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        Some(Tiles {
            _not_send: PhantomData,
        })
    }

    reg_op! {
        zero0 => "tilezero tmm0";
        zero1 => "tilezero tmm1";
        zero2 => "tilezero tmm2";
        zero5 => "tilezero tmm5";
        // Q4_K, two token tiles: C_lo, C_hi = (0, 1) for B 6 and (2, 5) for B 7, from
        // A_lo (3), A_hi (4): u8 weights × s8 acts.
        dpbusd_0_3_6 => "tdpbusd tmm0, tmm3, tmm6";
        dpbusd_1_4_6 => "tdpbusd tmm1, tmm4, tmm6";
        dpbusd_2_3_7 => "tdpbusd tmm2, tmm3, tmm7";
        dpbusd_5_4_7 => "tdpbusd tmm5, tmm4, tmm7";
    }

    load_op! {
        load3 => "3";
        load4 => "4";
        load6 => "6";
        load7 => "7";
    }

    store_op! {
        store0 => "0";
        store1 => "1";
        store2 => "2";
        store5 => "5";
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: `tilerelease` returns the tile state to its initial (unconfigured) state;
        // it touches no memory and nothing uses the tiles after this guard is gone.
        unsafe { std::arch::asm!("tilerelease", options(nomem, nostack, preserves_flags)) }
    }
}

/// Proof that this thread's tiles are configured for 32-quant blocks
/// ([`crate::packed`]): tmm0, tmm1, tmm5 and tmm6 are 16 × 16 int32 results (two pairs, so
/// one block's products run while the previous block's are stored), tmm2 and tmm3 16 rows ×
/// 32 bytes (16 tokens' int8 quants of one block), tmm4 8 rows × 64 bytes (one interleaved
/// block of 16 weight rows, unsigned). Releases them when dropped; not `Send`.
pub(crate) struct TilesK32 {
    _not_send: PhantomData<*const ()>,
}

impl TilesK32 {
    /// Configures the tiles as described on the type; `None` when [`enabled`] is false.
    pub(crate) fn configure() -> Option<TilesK32> {
        if !enabled() {
            return None;
        }
        load_config(
            [64, 64, 32, 32, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            [16, 16, 16, 16, 8, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        Some(TilesK32 {
            _not_send: PhantomData,
        })
    }

    reg_op! {
        zero0 => "tilezero tmm0";
        zero1 => "tilezero tmm1";
        zero5 => "tilezero tmm5";
        zero6 => "tilezero tmm6";
        // Signed activations (A: tmm2, tmm3) × unsigned weights (B: tmm4).
        dpbsud_0_2_4 => "tdpbsud tmm0, tmm2, tmm4";
        dpbsud_1_3_4 => "tdpbsud tmm1, tmm3, tmm4";
        dpbsud_5_2_4 => "tdpbsud tmm5, tmm2, tmm4";
        dpbsud_6_3_4 => "tdpbsud tmm6, tmm3, tmm4";
    }

    store_op! {
        store0 => "0";
        store1 => "1";
        store5 => "5";
        store6 => "6";
    }

    /// Loads tmm4 from one block's eight 64-byte lines.
    #[inline(always)]
    pub(crate) fn load_b4(&self, lines: &[[u8; 64]; 8]) {
        // SAFETY: tmm4 is configured as 8 rows × 64 bytes, so with a 64-byte stride
        // `tileloadd` reads exactly the 512 bytes of `lines`, which the borrow keeps alive.
        unsafe {
            std::arch::asm!(
                "tileloadd tmm4, [{p} + {s}*1]",
                p = in(reg) lines.as_ptr(),
                s = in(reg) 64usize,
                options(nostack, readonly, preserves_flags),
            )
        }
    }

    /// Loads tmm2 (`second`: tmm3) with 16 tokens' 32 quants of one block.
    #[inline(always)]
    pub(crate) fn load_a(&self, second: bool, q: &[[i8; 32]; 16]) {
        // SAFETY: the tile is configured as 16 rows × 32 bytes, so with a 32-byte stride
        // `tileloadd` reads exactly the 512 bytes of `q`, which the borrow keeps alive.
        unsafe {
            if second {
                std::arch::asm!(
                    "tileloadd tmm3, [{p} + {s}*1]",
                    p = in(reg) q.as_ptr(),
                    s = in(reg) 32usize,
                    options(nostack, readonly, preserves_flags),
                )
            } else {
                std::arch::asm!(
                    "tileloadd tmm2, [{p} + {s}*1]",
                    p = in(reg) q.as_ptr(),
                    s = in(reg) 32usize,
                    options(nostack, readonly, preserves_flags),
                )
            }
        }
    }
}

impl Drop for TilesK32 {
    fn drop(&mut self) {
        // SAFETY: as for `Tiles`: returns the tile state to its initial state.
        unsafe { std::arch::asm!("tilerelease", options(nomem, nostack, preserves_flags)) }
    }
}
