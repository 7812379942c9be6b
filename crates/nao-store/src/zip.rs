//! Just enough of the zip format to pull members out of a wheel: the end-of-central-
//! directory record (and its zip64 form), central-directory entries, local headers, and
//! stored or deflated data, checked against the entry's CRC-32 and size. Member names are
//! only compared, never used as paths, so a hostile archive cannot write anywhere.

use crate::error::{Result, StoreError};
use flate2::read::DeflateDecoder;
use flate2::Crc;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;

/// One member, from the central directory.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    method: u16,
    crc32: u32,
    compressed: u64,
    pub size: u64,
    local_offset: u64,
}

pub struct ZipReader {
    file: File,
    what: String,
    pub entries: Vec<Entry>,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from(le32(b, at)) | u64::from(le32(b, at + 4)) << 32
}

impl ZipReader {
    pub fn open(path: &Path) -> Result<ZipReader> {
        let what = path.display().to_string();
        let mut file = File::open(path).map_err(|e| StoreError::io(path, e))?;
        let len = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
        let bad = |reason: &str| StoreError::Zip {
            what: what.clone(),
            reason: reason.to_string(),
        };
        // The EOCD record is 22 bytes plus a comment of at most 65535.
        let tail_len = len.min(22 + 65535 + 20);
        let mut tail = vec![0u8; tail_len as usize];
        file.seek(SeekFrom::Start(len - tail_len))
            .and_then(|_| file.read_exact(&mut tail))
            .map_err(|e| StoreError::io(path, e))?;
        let eocd = (0..tail.len().saturating_sub(21))
            .rev()
            .find(|&i| le32(&tail, i) == EOCD_SIG)
            .ok_or_else(|| bad("no end-of-central-directory record (not a zip file)"))?;
        let mut count = u64::from(le16(&tail, eocd + 10));
        let mut cd_size = u64::from(le32(&tail, eocd + 12));
        let mut cd_offset = u64::from(le32(&tail, eocd + 16));
        if eocd >= 20 && le32(&tail, eocd - 20) == ZIP64_LOCATOR_SIG {
            let rec = le64(&tail, eocd - 20 + 8);
            let mut z = [0u8; 56];
            file.seek(SeekFrom::Start(rec))
                .and_then(|_| file.read_exact(&mut z))
                .map_err(|e| StoreError::io(path, e))?;
            if le32(&z, 0) != ZIP64_EOCD_SIG {
                return Err(bad("bad zip64 end-of-central-directory record"));
            }
            count = le64(&z, 32);
            cd_size = le64(&z, 40);
            cd_offset = le64(&z, 48);
        }
        if cd_offset.checked_add(cd_size).is_none_or(|end| end > len) || cd_size > 64 << 20 {
            return Err(bad("central directory out of bounds"));
        }
        let mut cd = vec![0u8; cd_size as usize];
        file.seek(SeekFrom::Start(cd_offset))
            .and_then(|_| file.read_exact(&mut cd))
            .map_err(|e| StoreError::io(path, e))?;
        let mut entries = Vec::new();
        let mut at = 0usize;
        for _ in 0..count {
            if at + 46 > cd.len() || le32(&cd, at) != CENTRAL_SIG {
                return Err(bad("truncated central directory"));
            }
            let method = le16(&cd, at + 10);
            let crc32 = le32(&cd, at + 16);
            let mut compressed = u64::from(le32(&cd, at + 20));
            let mut size = u64::from(le32(&cd, at + 24));
            let name_len = le16(&cd, at + 28) as usize;
            let extra_len = le16(&cd, at + 30) as usize;
            let comment_len = le16(&cd, at + 32) as usize;
            let mut local_offset = u64::from(le32(&cd, at + 42));
            let name_end = at + 46 + name_len;
            let extra_end = name_end + extra_len;
            if extra_end + comment_len > cd.len() {
                return Err(bad("truncated central directory entry"));
            }
            let name = String::from_utf8_lossy(&cd[at + 46..name_end]).into_owned();
            // zip64 extra field: the 64-bit values of the fields that read 0xFFFFFFFF.
            let mut x = name_end;
            while x + 4 <= extra_end {
                let id = le16(&cd, x);
                let n = le16(&cd, x + 2) as usize;
                let body_end = (x + 4 + n).min(extra_end);
                if id == 1 {
                    let mut v = x + 4;
                    for field in [&mut size, &mut compressed, &mut local_offset] {
                        if *field == 0xFFFF_FFFF && v + 8 <= body_end {
                            *field = le64(&cd, v);
                            v += 8;
                        }
                    }
                }
                x = body_end;
            }
            entries.push(Entry {
                name,
                method,
                crc32,
                compressed,
                size,
                local_offset,
            });
            at = extra_end + comment_len;
        }
        Ok(ZipReader {
            file,
            what,
            entries,
        })
    }

    /// Writes the uncompressed data of `e` to `out`, checking its size and CRC-32; returns
    /// the bytes written. `progress` gets the count of uncompressed bytes as they go.
    pub fn extract(
        &mut self,
        e: &Entry,
        out: &mut impl Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64> {
        let bad = |reason: String| StoreError::Zip {
            what: format!("{} ({})", self.what, e.name),
            reason,
        };
        let mut local = [0u8; 30];
        self.file
            .seek(SeekFrom::Start(e.local_offset))
            .and_then(|_| self.file.read_exact(&mut local))
            .map_err(|err| bad(err.to_string()))?;
        if le32(&local, 0) != LOCAL_SIG {
            return Err(bad("bad local header".into()));
        }
        let skip = u64::from(le16(&local, 26)) + u64::from(le16(&local, 28));
        self.file
            .seek(SeekFrom::Current(skip as i64))
            .map_err(|err| bad(err.to_string()))?;
        let raw = (&mut self.file).take(e.compressed);
        let mut reader: Box<dyn Read + '_> = match e.method {
            0 => Box::new(raw),
            8 => Box::new(DeflateDecoder::new(raw)),
            m => return Err(bad(format!("unsupported compression method {m}"))),
        };
        let mut crc = Crc::new();
        let mut buf = vec![0u8; crate::fsutil::CHUNK];
        let mut n = 0u64;
        loop {
            let k = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(bad(err.to_string())),
            };
            n += k as u64;
            if n > e.size {
                return Err(bad("more data than the directory says".into()));
            }
            crc.update(&buf[..k]);
            out.write_all(&buf[..k])
                .map_err(|err| bad(format!("write: {err}")))?;
            progress(k as u64);
        }
        if n != e.size {
            return Err(bad(format!("{n} bytes, the directory says {}", e.size)));
        }
        if crc.sum() != e.crc32 {
            return Err(bad("CRC-32 mismatch".into()));
        }
        Ok(n)
    }
}
