//! The scalar twin of the GEMM micro-kernels: the same register tile, as arrays.

/// Tokens per tile.
pub(super) const MR: usize = 4;
/// Weight rows per tile (and per packed panel).
pub(super) const NR: usize = 16;

/// One `c.len() × NR` tile over `kc` columns: `c[i][j] = fma(panel[k][j], xp[k][i], c[i][j])`
/// for `k = 0..kc` in order, starting from +0 when `first`, else from `c`'s values.
///
/// `panel` is `[kc][NR]` (packed weight rows), `xp` is `[kc][MR]` (packed tokens),
/// `c.len() <= MR`, and each `c[i]` holds at most `NR` outputs (the rows of a partial last
/// panel are simply not stored). Panics when a length breaks that (a logic error).
pub(super) fn tile(panel: &[f32], xp: &[f32], kc: usize, c: &mut [&mut [f32]], first: bool) {
    assert!(panel.len() >= kc * NR && xp.len() >= kc * MR && c.len() <= MR);
    assert!(c.iter().all(|ci| ci.len() <= NR));
    let m = c.len();
    let mut acc = [[0.0f32; NR]; MR];
    if !first {
        for (a, ci) in acc.iter_mut().zip(c.iter()) {
            a[..ci.len()].copy_from_slice(ci);
        }
    }
    for (w, xs) in panel.chunks_exact(NR).zip(xp.chunks_exact(MR)).take(kc) {
        for (a, &xv) in acc.iter_mut().zip(xs).take(m) {
            for (al, &wl) in a.iter_mut().zip(w) {
                *al = wl.mul_add(xv, *al);
            }
        }
    }
    for (a, ci) in acc.iter().zip(c.iter_mut()) {
        let n = ci.len();
        ci.copy_from_slice(&a[..n]);
    }
}
