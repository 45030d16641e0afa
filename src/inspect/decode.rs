//! Content-coding decoding for inspection only, with the decoded size capped.
//!
//! After [`super::collect`] has read a body within the inspection limit, the rules still
//! cannot look at it while it is gzip, deflate, brotli or zstd encoded. This module undoes the
//! codings named by `Content-Encoding` so that the rules see the representation a client
//! would. Decoded output is only ever for the rules: what candor forwards is either the
//! upstream's bytes untouched or a body it wrote itself.
//!
//! Compression is the biggest amplifier an upstream has (catalogue rows B3 and B4,
//! tests/README.md): 100 MiB of zeros is 172 bytes of brotli. So every decoding step, intermediate
//! or final, stops as soon as its output passes `limit`, and reports [`DecodeError::TooLarge`]
//! instead of inflating further; a bomb costs about `limit` bytes of output and the decoder's
//! fixed state. Anything that is not a complete, valid encoding (truncated, bad checksum,
//! trailing bytes) is [`DecodeError::Corrupt`], never a partial success, so a rule can never
//! match a prefix it mistook for the whole body.

use crate::metrics::SkipReason;
use std::cell::Cell;
use std::fmt;
use std::io::{self, Read};
use std::rc::Rc;

use bytes::Bytes;
use flate2::{Decompress, FlushDecompress, Status};

/// The most codings one `Content-Encoding` may stack; each costs a full decoding pass.
pub const MAX_CODINGS: usize = 4;

/// Largest zstd window accepted, as a power of two: 8 MiB.
///
/// RFC 9659 §3 requires HTTP zstd encoders to keep `Window_Size` at or below 8 MB and lets
/// decoders refuse more, so an honest upstream never needs more than this; without the cap a
/// 20-byte frame header could make the decoder reserve gigabytes.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// Input buffer of the brotli reader; the input is already in memory, so it only needs to be
/// large enough not to slow decoding down.
const BROTLI_INPUT_BUFFER: usize = 4096;

/// First allocation for decoded output; it then doubles, up to `limit + 1`.
const FIRST_OUTPUT_CHUNK: usize = 8 * 1024;

/// Longest part of an unknown coding name kept in an error, so that log lines stay bounded.
const MAX_NAME_IN_ERROR: usize = 32;

/// A content coding candor can undo for inspection (RFC 9110 §8.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Coding {
    /// No transformation; tolerated in `Content-Encoding` although it belongs in
    /// `Accept-Encoding`.
    Identity,
    /// `gzip` or its alias `x-gzip` (RFC 1952), possibly several concatenated members.
    Gzip,
    /// `deflate`: the zlib format (RFC 1950), or raw deflate (RFC 1951) as many servers send.
    Deflate,
    /// `br` (RFC 7932).
    Brotli,
    /// `zstd` (RFC 8878), with the window limited as RFC 9659 requires.
    Zstd,
}

impl Coding {
    /// The coding's token as it is registered for `Content-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
            Self::Brotli => "br",
            Self::Zstd => "zstd",
        }
    }

    /// Recognises a coding token; coding names are case-insensitive (RFC 9110 §8.4.1).
    fn from_token(token: &[u8]) -> Option<Self> {
        const TOKENS: [(&[u8], Coding); 6] = [
            (b"gzip", Coding::Gzip),
            (b"x-gzip", Coding::Gzip),
            (b"deflate", Coding::Deflate),
            (b"br", Coding::Brotli),
            (b"zstd", Coding::Zstd),
            (b"identity", Coding::Identity),
        ];
        TOKENS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(token))
            .map(|&(_, coding)| coding)
    }
}

impl fmt::Display for Coding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a body could not be decoded for inspection.
///
/// Each of these makes the response uninspectable; none of them is the client's concern.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// `Content-Encoding` names a coding candor does not decode (the name, escaped and cut).
    #[error("unsupported content coding `{0}`")]
    Unsupported(String),
    /// A decoding step produced more than `limit` bytes; decoding stopped there.
    #[error("decoded body is larger than the inspection limit of {limit} bytes")]
    TooLarge {
        /// The limit that was passed.
        limit: usize,
    },
    /// The encoded body is truncated, fails its checksum, or is otherwise not valid.
    #[error("corrupt encoded body: {0}")]
    Corrupt(String),
    /// `Content-Encoding` stacks more than [`MAX_CODINGS`] codings.
    #[error("more than {} stacked content codings", MAX_CODINGS)]
    TooManyCodings,
}

/// The body as rules see it: `data` with its `Content-Encoding` undone, capped at `limit`; or
/// `None` and the reason it could not be inspected (`too_large`, `encoding`).
pub fn for_inspection(
    headers: &http::HeaderMap,
    data: &Bytes,
    limit: usize,
) -> (Option<Bytes>, Option<SkipReason>) {
    for_inspection_as(headers.get(http::header::CONTENT_ENCODING), data, limit)
}

/// [`for_inspection`] of a body sent with this `Content-Encoding`.
pub fn for_inspection_as(
    encoding: Option<&http::HeaderValue>,
    data: &Bytes,
    limit: usize,
) -> (Option<Bytes>, Option<SkipReason>) {
    let decoded = match encoding {
        None => Ok(data.clone()),
        Some(encoding) => {
            parse_codings(encoding.as_bytes()).and_then(|codings| decode(&codings, data, limit))
        }
    };
    match decoded {
        Ok(decoded) => (Some(decoded), None),
        Err(DecodeError::TooLarge { .. }) => (None, Some(SkipReason::TooLarge)),
        Err(_) => (None, Some(SkipReason::Encoding)),
    }
}

/// Parses a `Content-Encoding` field value (e.g. `gzip`, `x-gzip`, `deflate`, `br`, `zstd`,
/// `identity`, `gzip, br`) into the codings in the order they were applied.
///
/// Names are case-insensitive, whitespace around them is ignored, and so are empty list
/// elements (RFC 9110 §5.6.1). An empty value gives no codings. When a response has several
/// `Content-Encoding` field lines, join their values with commas, in order (RFC 9110 §5.3).
pub fn parse_codings(value: &[u8]) -> Result<Vec<Coding>, DecodeError> {
    let mut codings = Vec::new();
    for element in value.split(|&byte| byte == b',') {
        let token = element.trim_ascii();
        if token.is_empty() {
            continue;
        }
        if codings.len() == MAX_CODINGS {
            return Err(DecodeError::TooManyCodings);
        }
        let coding =
            Coding::from_token(token).ok_or_else(|| DecodeError::Unsupported(printable(token)))?;
        codings.push(coding);
    }
    Ok(codings)
}

/// Decodes `input`, to which `codings` were applied in the order given (as listed in
/// `Content-Encoding`), into at most `limit` bytes.
///
/// The codings are undone last first (RFC 9110 §8.4). Every step's output is capped at
/// `limit`: once a step produces `limit + 1` bytes, decoding stops with
/// [`DecodeError::TooLarge`]. An empty `input` decodes to an empty body whatever the codings,
/// as clients treat an empty encoded body.
pub fn decode(codings: &[Coding], input: &[u8], limit: usize) -> Result<Bytes, DecodeError> {
    if codings.len() > MAX_CODINGS {
        return Err(DecodeError::TooManyCodings);
    }
    if input.is_empty() {
        return Ok(Bytes::new());
    }
    let mut decoded: Option<Vec<u8>> = None;
    for &coding in codings.iter().rev() {
        let source = decoded.as_deref().unwrap_or(input);
        if coding == Coding::Identity {
            continue;
        }
        decoded = Some(decode_one(coding, source, limit)?);
    }
    match decoded {
        Some(output) => Ok(Bytes::from(output)),
        None if input.len() > limit => Err(DecodeError::TooLarge { limit }),
        None => Ok(Bytes::copy_from_slice(input)),
    }
}

/// Undoes one coding, producing at most `limit` bytes.
fn decode_one(coding: Coding, input: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let corrupt = |error: io::Error| DecodeError::Corrupt(format!("{coding}: {error}"));
    match coding {
        Coding::Identity if input.len() > limit => Err(DecodeError::TooLarge { limit }),
        Coding::Identity => Ok(input.to_vec()),
        // Legacy servers concatenate gzip members (RFC 1952 §2.2); a client decodes them all.
        // The `bufread` flavour reads the slice directly, with no second buffer.
        Coding::Gzip => read_capped(
            flate2::bufread::MultiGzDecoder::new(input),
            input.len(),
            limit,
        )
        .map_err(corrupt)?,
        Coding::Deflate => inflate(input, limit),
        Coding::Brotli => unbrotli(input, limit),
        Coding::Zstd => {
            // The streaming decoder, so that the cap applies while decoding; concatenated
            // frames are all decoded, as RFC 8878 §3 allows.
            let mut decoder = zstd::stream::read::Decoder::with_buffer(input).map_err(corrupt)?;
            decoder
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(corrupt)?;
            read_capped(decoder, input.len(), limit).map_err(corrupt)?
        }
    }
}

/// Decodes the `br` coding, with its ring buffer bounded and bytes after the end rejected.
///
/// The brotli decoder sizes its ring buffer from a metablock's declared length, up to the
/// stream's window (16 MiB): a 52-byte bomb made it reserve, and touch, 16 MiB before the
/// first byte came out, whatever `limit` was. Output capped at `limit` never needs a ring
/// buffer larger than `limit` rounded up to a power of two, so a [`BoundedAlloc`] refuses
/// larger ones, and a refusal means the stream would decode to more than `limit` bytes.
///
/// brotli-decompressor's reader returns `Ok(0)` at the end of the stream even when bytes
/// follow it; it reports those only on the next read, and only if it had already buffered
/// them. So: read once more, then check that the decoder took the whole input.
fn unbrotli(input: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    use brotli_decompressor::reader::DecompressorCustomAlloc;
    use brotli_decompressor::{Allocator, StandardAlloc};

    let corrupt = |detail: &dyn fmt::Display| DecodeError::Corrupt(format!("br: {detail}"));
    let refused = Rc::new(Cell::new(false));
    let mut alloc_u8 = BoundedAlloc {
        largest: brotli_ring_budget(limit),
        refused: Rc::clone(&refused),
    };
    let buffer = alloc_u8.alloc_cell(BROTLI_INPUT_BUFFER);
    let mut unread = input;
    let mut decoder = DecompressorCustomAlloc::new(
        &mut unread,
        buffer,
        alloc_u8,
        StandardAlloc::default(),
        StandardAlloc::default(),
    );
    let output = match read_capped(&mut decoder, input.len(), limit) {
        Ok(Ok(output)) => output,
        Ok(Err(too_large)) => return Err(too_large),
        Err(_) if refused.get() => return Err(DecodeError::TooLarge { limit }),
        Err(error) => return Err(corrupt(&error)),
    };
    let mut probe = [0u8; 1];
    match decoder.read(&mut probe) {
        Ok(0) => {}
        Ok(_) => return Err(corrupt(&"output after the end of the stream")),
        Err(error) => return Err(corrupt(&error)),
    }
    drop(decoder);
    if !unread.is_empty() {
        return Err(corrupt(&"bytes after the end of the stream"));
    }
    Ok(output)
}

/// The largest single byte allocation the brotli decoder may make for output capped at
/// `limit`: a ring buffer of `limit` rounded up to a power of two (never below 64 KiB, so
/// that the decoder's other byte tables, at most 16 KiB, always fit) plus its slack, which
/// brotli-decompressor sets at 566 bytes.
fn brotli_ring_budget(limit: usize) -> usize {
    const SLACK: usize = 1024;
    limit
        .max(64 * 1024)
        .checked_next_power_of_two()
        .unwrap_or(usize::MAX)
        .saturating_add(SLACK)
}

/// The brotli decoder's byte allocator: the standard one, but an allocation larger than
/// `largest` fails (an empty cell, which the decoder reports as an error) and is recorded.
struct BoundedAlloc {
    largest: usize,
    refused: Rc<Cell<bool>>,
}

impl brotli_decompressor::Allocator<u8> for BoundedAlloc {
    type AllocatedMemory =
        <brotli_decompressor::StandardAlloc as brotli_decompressor::Allocator<u8>>::AllocatedMemory;

    fn alloc_cell(&mut self, len: usize) -> Self::AllocatedMemory {
        if len > self.largest {
            self.refused.set(true);
            return Self::AllocatedMemory::default();
        }
        brotli_decompressor::StandardAlloc::default().alloc_cell(len)
    }

    fn free_cell(&mut self, cell: Self::AllocatedMemory) {
        drop(cell);
    }
}

/// Reads `reader` to its end into a buffer that never grows past `limit + 1` bytes.
///
/// The outer `Err` is the reader's own failure; the inner result tells whether the output fit.
/// `Read::take` plus `read_to_end` would cap the bytes too, but `Vec` growth could still
/// reserve up to twice `limit`; growing by hand keeps the reservation within `limit + 1`.
fn read_capped(
    mut reader: impl Read,
    input_len: usize,
    limit: usize,
) -> io::Result<Result<Vec<u8>, DecodeError>> {
    let max = limit.saturating_add(1);
    let mut out = Vec::new();
    let mut filled = 0;
    loop {
        if filled == out.len() {
            if out.len() >= max {
                // `limit + 1` bytes came out: the body is too large, whatever follows.
                return Ok(Err(DecodeError::TooLarge { limit }));
            }
            let target = next_capacity(out.len(), input_len, max);
            out.reserve_exact(target - out.len());
            out.resize(target, 0);
        }
        match reader.read(&mut out[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    out.truncate(filled);
    Ok(Ok(out))
}

/// The next output buffer size: double the current one (starting from a guess based on the
/// input size), never more than `max`.
fn next_capacity(current: usize, input_len: usize, max: usize) -> usize {
    let first = input_len.saturating_mul(2).max(FIRST_OUTPUT_CHUNK);
    current.saturating_mul(2).max(first).min(max)
}

/// Decodes the `deflate` coding.
///
/// RFC 9110 §8.4.1.2 defines it as the zlib format, but many servers have sent raw deflate
/// instead, so, as browsers do, the zlib header decides: input that does not start with a
/// valid zlib header is decoded as raw deflate.
///
/// This drives `Decompress` directly rather than through flate2's `Read` adapters: it accepts
/// only a stream that reached its end marker (the adapters returned a truncated stream as a
/// success until rust-lang/flate2-rs#556; the 1.1.11 required here has that fix, and the gzip
/// path relies on it), and it sees bytes left over after the end, which the adapters ignore.
fn inflate(input: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let zlib = has_zlib_header(input);
    let format = if zlib {
        "deflate (zlib)"
    } else {
        "deflate (raw)"
    };
    let corrupt = |detail: &dyn fmt::Display| DecodeError::Corrupt(format!("{format}: {detail}"));
    let max = limit.saturating_add(1);
    let mut decompress = Decompress::new(zlib);
    let mut out: Vec<u8> = Vec::new();
    loop {
        if out.len() == out.capacity() {
            if out.len() >= max {
                return Err(DecodeError::TooLarge { limit });
            }
            let target = next_capacity(out.len(), input.len(), max);
            out.reserve_exact(target - out.len());
        }
        let consumed = counter(decompress.total_in());
        let produced = out.len();
        let status = decompress
            .decompress_vec(
                input.get(consumed..).unwrap_or_default(),
                &mut out,
                FlushDecompress::None,
            )
            .map_err(|error| corrupt(&error))?;
        if status == Status::StreamEnd {
            break;
        }
        let stalled = counter(decompress.total_in()) == consumed && out.len() == produced;
        if stalled && out.len() < out.capacity() {
            // Room to write and nothing left to read, yet the stream has not ended.
            return Err(corrupt(&"truncated stream"));
        }
    }
    if out.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    if counter(decompress.total_in()) != input.len() {
        return Err(corrupt(&"bytes after the end of the stream"));
    }
    Ok(out)
}

/// Whether `input` starts with a zlib header (RFC 1950 §2.2): method 8 with a window of at
/// most 32 KiB, no preset dictionary, and a valid header check.
fn has_zlib_header(input: &[u8]) -> bool {
    let [cmf, flg, ..] = *input else {
        return false;
    };
    let method = cmf & 0x0f;
    let window = cmf >> 4;
    let preset_dictionary = flg & 0x20 != 0;
    method == 8 && window <= 7 && !preset_dictionary && u16::from_be_bytes([cmf, flg]) % 31 == 0
}

/// A flate2 byte counter as an index; it never exceeds the input length, which is a `usize`.
fn counter(total: u64) -> usize {
    usize::try_from(total).unwrap_or(usize::MAX)
}

/// An unknown coding name made safe for a log line: escaped and cut short.
fn printable(token: &[u8]) -> String {
    let shown = &token[..token.len().min(MAX_NAME_IN_ERROR)];
    let mut name = shown.escape_ascii().to_string();
    if shown.len() < token.len() {
        name.push('…');
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Write;
    use std::time::{Duration, Instant};

    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use flate2::Compression;

    const LIMIT: usize = 256 * 1024;

    fn text(len: usize) -> Vec<u8> {
        let line = b"{\"status\":\"error\",\"message\":\"not found\",\"id\":12345}\n";
        line.iter().copied().cycle().take(len).collect()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder
            .write_all(data)
            .expect("writing to a Vec cannot fail");
        encoder.finish().expect("writing to a Vec cannot fail")
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut encoder = ZlibEncoder::new(Vec::new(), Compression::default());
        encoder
            .write_all(data)
            .expect("writing to a Vec cannot fail");
        encoder.finish().expect("writing to a Vec cannot fail")
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
        encoder
            .write_all(data)
            .expect("writing to a Vec cannot fail");
        encoder.finish().expect("writing to a Vec cannot fail")
    }

    fn brotli(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let params = brotli::enc::BrotliEncoderParams {
            quality: 9,
            lgwin: 22,
            ..Default::default()
        };
        brotli::BrotliCompress(&mut &data[..], &mut out, &params)
            .expect("compressing into a Vec cannot fail");
        out
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::encode_all(data, 3).expect("compressing into a Vec cannot fail")
    }

    fn encode(coding: Coding, data: &[u8]) -> Vec<u8> {
        match coding {
            Coding::Identity => data.to_vec(),
            Coding::Gzip => gzip(data),
            Coding::Deflate => zlib(data),
            Coding::Brotli => brotli(data),
            Coding::Zstd => zstd(data),
        }
    }

    const ALL: [Coding; 5] = [
        Coding::Identity,
        Coding::Gzip,
        Coding::Deflate,
        Coding::Brotli,
        Coding::Zstd,
    ];

    #[test]
    fn parses_content_encoding_values() {
        use Coding::*;
        let cases: &[(&[u8], &[Coding])] = &[
            (b"", &[]),
            (b"gzip", &[Gzip]),
            (b"x-gzip", &[Gzip]),
            (b"GZip", &[Gzip]),
            (b"deflate", &[Deflate]),
            (b"br", &[Brotli]),
            (b"zstd", &[Zstd]),
            (b"identity", &[Identity]),
            (b"gzip, br", &[Gzip, Brotli]),
            (b" \tgzip ,BR\t", &[Gzip, Brotli]),
            (b"gzip,,br, ", &[Gzip, Brotli]),
            (b"gzip, deflate, br, zstd", &[Gzip, Deflate, Brotli, Zstd]),
        ];
        for (value, expected) in cases {
            let parsed = parse_codings(value);
            assert_eq!(
                parsed.as_deref().ok(),
                Some(*expected),
                "{:?}",
                value.escape_ascii().to_string()
            );
        }
    }

    #[test]
    fn rejects_unknown_and_too_many_codings() {
        for value in [&b"compress"[..], b"gzip, lzma", b"gzip;q=1", b"x-gzip2"] {
            assert!(
                matches!(parse_codings(value), Err(DecodeError::Unsupported(_))),
                "{}",
                value.escape_ascii()
            );
        }
        assert!(matches!(
            parse_codings(b"gzip, gzip, gzip, gzip, gzip"),
            Err(DecodeError::TooManyCodings)
        ));
        let long = [b'a'; 1000];
        let Err(DecodeError::Unsupported(name)) = parse_codings(&long) else {
            panic!("expected unsupported");
        };
        assert!(name.chars().count() <= MAX_NAME_IN_ERROR + 1);
        let Err(DecodeError::Unsupported(name)) = parse_codings(b"\x01\xffzip") else {
            panic!("expected unsupported");
        };
        assert_eq!(name, "\\x01\\xffzip");
    }

    #[test]
    fn each_coding_round_trips() {
        let data = text(100_000);
        for coding in ALL {
            let encoded = encode(coding, &data);
            let decoded = decode(&[coding], &encoded, LIMIT);
            assert_eq!(decoded.ok().as_deref(), Some(&data[..]), "{coding}");
        }
    }

    #[test]
    fn small_and_empty_bodies_round_trip() {
        for coding in ALL {
            for data in [&b""[..], b"x", b"{\"status\":\"error\"}"] {
                let encoded = encode(coding, data);
                let decoded = decode(&[coding], &encoded, LIMIT);
                assert_eq!(decoded.ok().as_deref(), Some(data), "{coding} {data:?}");
            }
            // An empty body with a coding is empty, as clients see it.
            assert_eq!(decode(&[coding], b"", LIMIT).ok(), Some(Bytes::new()));
        }
    }

    #[test]
    fn stacked_codings_are_undone_last_first() {
        let data = text(50_000);
        // `Content-Encoding: gzip, br`: gzip was applied first, then brotli.
        let encoded = brotli(&gzip(&data));
        let codings = parse_codings(b"gzip, br").expect("valid header");
        assert_eq!(
            decode(&codings, &encoded, LIMIT).ok().as_deref(),
            Some(&data[..])
        );
        // The other order does not decode.
        assert!(matches!(
            decode(&[Coding::Brotli, Coding::Gzip], &encoded, LIMIT),
            Err(DecodeError::Corrupt(_))
        ));
        let encoded = zstd(&raw_deflate(&gzip(&data)));
        let codings = [
            Coding::Gzip,
            Coding::Identity,
            Coding::Deflate,
            Coding::Zstd,
        ];
        assert_eq!(
            decode(&codings, &encoded, LIMIT).ok().as_deref(),
            Some(&data[..])
        );
    }

    #[test]
    fn x_gzip_decodes_as_gzip() {
        let data = text(1000);
        let codings = parse_codings(b"x-gzip").expect("valid header");
        assert_eq!(
            decode(&codings, &gzip(&data), LIMIT).ok().as_deref(),
            Some(&data[..])
        );
    }

    #[test]
    fn raw_deflate_is_accepted_for_deflate() {
        let data = text(10_000);
        let encoded = raw_deflate(&data);
        assert!(!has_zlib_header(&encoded));
        assert_eq!(
            decode(&[Coding::Deflate], &encoded, LIMIT).ok().as_deref(),
            Some(&data[..])
        );
    }

    #[test]
    fn concatenated_gzip_members_are_all_decoded() {
        let mut encoded = gzip(b"first ");
        encoded.extend(gzip(b"second"));
        assert_eq!(
            decode(&[Coding::Gzip], &encoded, LIMIT).ok().as_deref(),
            Some(&b"first second"[..])
        );
    }

    #[test]
    fn truncated_input_is_corrupt_for_every_coding() {
        let data = text(100_000);
        for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd] {
            let encoded = encode(coding, &data);
            // Cut in the middle, inside the last few bytes (gzip's trailer, zlib's Adler-32,
            // the last block), and one byte short.
            let cuts = [
                1,
                2,
                encoded.len() / 2,
                encoded.len() - 5,
                encoded.len() - 1,
            ];
            for cut in cuts {
                let result = decode(&[coding], &encoded[..cut], LIMIT);
                assert!(
                    matches!(result, Err(DecodeError::Corrupt(_))),
                    "{coding} cut at {cut} of {}: {result:?}",
                    encoded.len()
                );
            }
        }
        for cut in 1..raw_deflate(b"hello").len() {
            let encoded = raw_deflate(b"hello hello hello");
            let result = decode(&[Coding::Deflate], &encoded[..cut], LIMIT);
            assert!(
                matches!(result, Err(DecodeError::Corrupt(_))),
                "raw cut at {cut}"
            );
        }
    }

    #[test]
    fn every_prefix_of_a_small_gzip_is_corrupt() {
        let encoded = gzip(b"{\"status\":\"error\"}");
        for cut in 1..encoded.len() {
            let result = decode(&[Coding::Gzip], &encoded[..cut], LIMIT);
            assert!(
                matches!(result, Err(DecodeError::Corrupt(_))),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn bad_checksums_are_corrupt() {
        let data = text(10_000);
        // gzip: the CRC-32 is the 8 bytes before the last 4 (ISIZE).
        let mut encoded = gzip(&data);
        let crc = encoded.len() - 8;
        encoded[crc] ^= 0xff;
        assert!(matches!(
            decode(&[Coding::Gzip], &encoded, LIMIT),
            Err(DecodeError::Corrupt(_))
        ));
        // gzip: a wrong ISIZE.
        let mut encoded = gzip(&data);
        let last = encoded.len() - 1;
        encoded[last] ^= 0x01;
        assert!(matches!(
            decode(&[Coding::Gzip], &encoded, LIMIT),
            Err(DecodeError::Corrupt(_))
        ));
        // zlib: the Adler-32 is the last 4 bytes.
        let mut encoded = zlib(&data);
        let last = encoded.len() - 1;
        encoded[last] ^= 0xff;
        assert!(matches!(
            decode(&[Coding::Deflate], &encoded, LIMIT),
            Err(DecodeError::Corrupt(_))
        ));
        // zstd: the optional XXH64-based checksum is the last 4 bytes of a frame that has one.
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
        encoder.include_checksum(true).expect("parameter");
        encoder
            .write_all(&data)
            .expect("writing to a Vec cannot fail");
        let mut encoded = encoder.finish().expect("writing to a Vec cannot fail");
        let last = encoded.len() - 1;
        encoded[last] ^= 0xff;
        assert!(matches!(
            decode(&[Coding::Zstd], &encoded, LIMIT),
            Err(DecodeError::Corrupt(_))
        ));
    }

    #[test]
    fn trailing_bytes_are_corrupt() {
        let data = text(1000);
        for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd] {
            let mut encoded = encode(coding, &data);
            encoded.extend_from_slice(b"garbage");
            let result = decode(&[coding], &encoded, LIMIT);
            assert!(
                matches!(result, Err(DecodeError::Corrupt(_))),
                "{coding}: {result:?}"
            );
        }
        let mut encoded = raw_deflate(&data);
        encoded.extend_from_slice(b"garbage");
        assert!(matches!(
            decode(&[Coding::Deflate], &encoded, LIMIT),
            Err(DecodeError::Corrupt(_))
        ));
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        let garbage: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd] {
            let result = decode(&[coding], &garbage, LIMIT);
            assert!(
                matches!(result, Err(DecodeError::Corrupt(_))),
                "{coding}: {result:?}"
            );
        }
    }

    #[test]
    fn output_exactly_at_the_limit_is_accepted_and_one_more_is_not() {
        for coding in ALL {
            for limit in [1, 4096, LIMIT] {
                let data = text(limit);
                let encoded = encode(coding, &data);
                let at = decode(&[coding], &encoded, limit);
                assert_eq!(at.ok().as_deref(), Some(&data[..]), "{coding} at {limit}");
                let over = decode(&[coding], &encoded, limit - 1);
                assert!(
                    matches!(over, Err(DecodeError::TooLarge { limit: l }) if l == limit - 1),
                    "{coding} over {limit}: {over:?}"
                );
            }
        }
    }

    #[test]
    fn intermediate_steps_are_capped_too() {
        // The inner gzip layer decodes to 1 MiB, the outer brotli layer to a few KiB: the
        // outer step is within the limit, the inner one is not.
        let data = vec![b'a'; 1 << 20];
        let encoded = brotli(&gzip(&data));
        let result = decode(&[Coding::Gzip, Coding::Brotli], &encoded, LIMIT);
        assert!(
            matches!(result, Err(DecodeError::TooLarge { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn zstd_frames_asking_for_a_window_above_8_mib_are_refused() {
        // A 2^24 window and no content size in the header, so the frame really declares a
        // 16 MiB window (with a known small size the encoder would shrink it).
        let data = text(64 * 1024);
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
        encoder.include_contentsize(false).expect("parameter");
        encoder.window_log(24).expect("parameter");
        encoder
            .write_all(&data)
            .expect("writing to a Vec cannot fail");
        let encoded = encoder.finish().expect("writing to a Vec cannot fail");
        let result = decode(&[Coding::Zstd], &encoded, LIMIT);
        let refused =
            matches!(&result, Err(DecodeError::Corrupt(e)) if e.contains("too much memory"));
        assert!(refused, "{result:?}");
        // The same data with an 8 MiB window is fine.
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
        encoder.include_contentsize(false).expect("parameter");
        encoder.window_log(23).expect("parameter");
        encoder
            .write_all(&data)
            .expect("writing to a Vec cannot fail");
        let encoded = encoder.finish().expect("writing to a Vec cannot fail");
        assert_eq!(
            decode(&[Coding::Zstd], &encoded, LIMIT).ok().as_deref(),
            Some(&data[..])
        );
    }

    /// 64 MiB of zeros, encoded by streaming so that the zeros are never all in memory.
    fn bomb(coding: Coding) -> Vec<u8> {
        const SIZE: u64 = 64 << 20;
        let mut zeros = io::repeat(0).take(SIZE);
        match coding {
            Coding::Identity => unreachable!("no bomb without compression"),
            Coding::Gzip => {
                let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
                io::copy(&mut zeros, &mut encoder).expect("writing to a Vec cannot fail");
                encoder.finish().expect("writing to a Vec cannot fail")
            }
            Coding::Deflate => {
                let mut encoder = ZlibEncoder::new(Vec::new(), Compression::best());
                io::copy(&mut zeros, &mut encoder).expect("writing to a Vec cannot fail");
                encoder.finish().expect("writing to a Vec cannot fail")
            }
            Coding::Brotli => {
                let mut out = Vec::new();
                let params = brotli::enc::BrotliEncoderParams {
                    quality: 5,
                    lgwin: 24,
                    ..Default::default()
                };
                brotli::BrotliCompress(&mut zeros, &mut out, &params)
                    .expect("compressing into a Vec cannot fail");
                out
            }
            Coding::Zstd => {
                let mut encoder =
                    zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
                encoder.set_pledged_src_size(Some(SIZE)).expect("parameter");
                io::copy(&mut zeros, &mut encoder).expect("writing to a Vec cannot fail");
                encoder.finish().expect("writing to a Vec cannot fail")
            }
        }
    }

    #[test]
    fn bombs_stop_at_the_limit_quickly() {
        for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd] {
            let encoded = bomb(coding);
            let started = Instant::now();
            let result = decode(&[coding], &encoded, LIMIT);
            let took = started.elapsed();
            eprintln!(
                "bomb {coding}: 64 MiB of zeros in {} bytes, refused in {took:?}",
                encoded.len()
            );
            assert!(
                matches!(result, Err(DecodeError::TooLarge { limit: LIMIT })),
                "{coding}: {result:?}"
            );
            // Generous for a debug build on a loaded machine; a full inflate would take
            // far longer, and the memory test in `tests/` checks the allocation.
            assert!(took < Duration::from_secs(2), "{coding} took {took:?}");
        }
    }

    fn brotli_with(data: &[u8], quality: i32, lgwin: i32) -> Vec<u8> {
        let mut out = Vec::new();
        let params = brotli::enc::BrotliEncoderParams {
            quality,
            lgwin,
            ..Default::default()
        };
        brotli::BrotliCompress(&mut &data[..], &mut out, &params)
            .expect("compressing into a Vec cannot fail");
        out
    }

    #[test]
    fn brotli_bombs_stop_at_the_limit_whatever_their_window() {
        let zeros = vec![0u8; 8 << 20];
        for lgwin in [10, 16, 18, 20, 22, 24] {
            let encoded = brotli_with(&zeros, 5, lgwin);
            let result = decode(&[Coding::Brotli], &encoded, LIMIT);
            assert!(
                matches!(result, Err(DecodeError::TooLarge { limit: LIMIT })),
                "lgwin {lgwin}: {result:?}"
            );
        }
    }

    #[test]
    fn brotli_bodies_up_to_the_limit_decode_with_any_window() {
        // The ring buffer budget must never refuse a stream whose output fits the limit.
        for limit in [1, 1000, 65_536, 100_000, LIMIT] {
            let data = text(limit);
            for (quality, lgwin) in [(1, 10), (5, 16), (5, 24), (9, 24)] {
                let encoded = brotli_with(&data, quality, lgwin);
                let at = decode(&[Coding::Brotli], &encoded, limit);
                assert_eq!(
                    at.ok().as_deref(),
                    Some(&data[..]),
                    "{limit} q{quality} w{lgwin}"
                );
                let over = decode(&[Coding::Brotli], &encoded, limit - 1);
                assert!(
                    matches!(over, Err(DecodeError::TooLarge { .. })),
                    "{limit} q{quality} w{lgwin}: {over:?}"
                );
            }
        }
    }

    /// A reader that checks that the buffers it is handed never reach past `limit + 1` bytes
    /// of output in total.
    struct Watch<R> {
        inner: R,
        returned: usize,
        widest: usize,
    }

    impl<R: Read> Read for Watch<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.widest = self.widest.max(self.returned + buf.len());
            let read = self.inner.read(buf)?;
            self.returned += read;
            Ok(read)
        }
    }

    #[test]
    fn read_capped_reads_one_byte_past_the_limit_into_a_bounded_buffer() {
        for limit in [0, 1, 100, 8191, 8192, 8193, LIMIT - 1, LIMIT, LIMIT + 1] {
            let mut watch = Watch {
                inner: io::repeat(0).take(10 * LIMIT as u64),
                returned: 0,
                widest: 0,
            };
            let result = read_capped(&mut watch, 10, limit).expect("no io error");
            assert!(
                matches!(result, Err(DecodeError::TooLarge { .. })),
                "{limit}"
            );
            assert_eq!(
                watch.returned,
                limit + 1,
                "read exactly one byte past the limit"
            );
            assert!(
                watch.widest <= limit + 1,
                "buffer of {} for {limit}",
                watch.widest
            );
        }
        let mut watch = Watch {
            inner: io::repeat(7).take(LIMIT as u64),
            returned: 0,
            widest: 0,
        };
        let result = read_capped(&mut watch, 10, LIMIT).expect("no io error");
        assert_eq!(result.ok().map(|v| v.len()), Some(LIMIT));
    }
}
