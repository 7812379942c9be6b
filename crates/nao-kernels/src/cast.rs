//! Viewing raw tensor bytes as typed block slices, with length and alignment checked.

use crate::blocks::Block;
use std::mem::{align_of, size_of};

/// Views `bytes` as a slice of `T`, or `None` when the length is not a multiple of
/// `size_of::<T>()` or the start is not aligned for `T`.
pub fn cast_slice<T: Block>(bytes: &[u8]) -> Option<&[T]> {
    let size = size_of::<T>();
    if !bytes.len().is_multiple_of(size)
        || !(bytes.as_ptr() as usize).is_multiple_of(align_of::<T>())
    {
        return None;
    }
    // SAFETY: `T: Block` is valid for every bit pattern and has no padding; the pointer is
    // aligned for T and the length is an exact multiple of size_of::<T>(), so the new slice
    // covers exactly the same bytes with the same lifetime.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) })
}

/// Views a slice of blocks as its raw bytes.
pub fn as_bytes<T: Block>(blocks: &[T]) -> &[u8] {
    // SAFETY: `T: Block` has no padding, so every byte of the slice is initialised; u8 has
    // alignment 1 and the byte length is exactly len * size_of::<T>().
    unsafe {
        std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), std::mem::size_of_val(blocks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::BlockQ4_0;

    #[test]
    fn rejects_bad_length_and_alignment() {
        let buf = [0u8; 18 * 3 + 2];
        assert!(cast_slice::<BlockQ4_0>(&buf[..18 * 3 + 1]).is_none());
        assert_eq!(
            cast_slice::<BlockQ4_0>(&buf[..54]).map(|s| s.len()),
            Some(3)
        );
        let f = vec![0f32; 4];
        let bytes = as_bytes(&f);
        assert!(cast_slice::<f32>(&bytes[1..5]).is_none());
    }
}
