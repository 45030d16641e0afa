//! The origin's bodies: one template per kind and size, with the exchange id written into it so
//! that no two responses carry the same bytes (a body delivered to the wrong request fails its
//! checksum), and SHA-256 digests that cost the origin almost nothing per response: the hasher
//! state after the constant prefix is kept, and only the id and the suffix are hashed again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest, Sha256};

use super::super::rng::Rng;
use super::spec::Kind;

/// Length of the id tag written into a body: the id as 16 hex digits.
pub const TAG: usize = 16;

/// A body of one kind and size, less its id tag.
pub struct Template {
    prefix: Vec<u8>,
    suffix: Vec<u8>,
    /// False for bodies too small to hold a tag: they are the same for every id.
    tagged: bool,
    /// The hasher after `prefix`.
    state: Sha256,
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 15)] as char);
    }
    out
}

fn tag(id: u64) -> [u8; TAG] {
    let mut out = [0u8; TAG];
    out.copy_from_slice(format!("{id:016x}").as_bytes());
    out
}

/// Printable filler: easy to read in a dump, never JSON- or HTML-significant.
fn pad(len: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len).map(|i| ALPHABET[i % ALPHABET.len()]).collect()
}

impl Template {
    fn new(prefix: Vec<u8>, suffix: Vec<u8>, tagged: bool) -> Template {
        let mut state = Sha256::new();
        state.update(&prefix);
        Template {
            prefix,
            suffix,
            tagged,
            state,
        }
    }

    /// A body with a tag between a prefix ending in `head` + filler and `tail`, `size` bytes in
    /// all, or `None` when `size` is too small for it.
    fn framed(head: &[u8], between: &[u8], tail: &[u8], size: usize) -> Option<Template> {
        let fixed = head.len() + between.len() + TAG + tail.len();
        let filler = size.checked_sub(fixed)?;
        let mut prefix = Vec::with_capacity(size - TAG - tail.len());
        prefix.extend_from_slice(head);
        prefix.extend_from_slice(&pad(filler));
        prefix.extend_from_slice(between);
        Some(Template::new(prefix, tail.to_vec(), true))
    }

    fn build(kind: Kind, size: usize) -> Template {
        let untagged = |bytes: Vec<u8>| Template::new(bytes, Vec::new(), false);
        let small_json = |size: usize| match size {
            0 => Vec::new(),
            1 => b"0".to_vec(),
            n => {
                let mut v = vec![b'"'];
                v.extend_from_slice(&pad(n - 2));
                v.push(b'"');
                v
            }
        };
        let template = match kind {
            Kind::Json => {
                Template::framed(br#"{"status":"ok","pad":""#, br#"","id":""#, br#""}"#, size)
            }
            Kind::Busy503 => Template::framed(
                br#"{"status":"busy","pad":""#,
                br#"","id":""#,
                br#""}"#,
                size,
            ),
            Kind::ErrorJson => Template::framed(
                br#"{"status":"error","code":1042,"message":"no such user","pad":""#,
                br#"","id":""#,
                br#""}"#,
                size,
            ),
            Kind::Text => Template::framed(b"the quick brown fox ", b" id ", b"\n", size),
            Kind::Html404 | Kind::Html404Browser => Template::framed(
                b"<html><title>Not Found</title><h1>Not Found</h1><p>",
                b"<i>",
                b"</i></html>",
                size,
            ),
            Kind::Trace500 => Template::framed(
                b"Traceback (most recent call last):\n  File \"/srv/app/x.py\", line 8\n",
                b" ",
                b"\n",
                size,
            ),
            Kind::Binary => {
                let mut bytes = vec![0u8; size.saturating_sub(TAG)];
                Rng::new(size as u64).fill(&mut bytes);
                (size >= TAG).then(|| Template::new(bytes, Vec::new(), true))
            }
        };
        template.unwrap_or_else(|| match kind {
            Kind::Json | Kind::Busy503 => untagged(small_json(size)),
            Kind::Binary => {
                let mut bytes = vec![0u8; size];
                Rng::new(size as u64).fill(&mut bytes);
                untagged(bytes)
            }
            _ => untagged(pad(size)),
        })
    }

    /// The body of exchange `id`.
    pub fn body(&self, id: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        out.extend_from_slice(&self.prefix);
        if self.tagged {
            out.extend_from_slice(&tag(id));
        }
        out.extend_from_slice(&self.suffix);
        out
    }

    /// Its length.
    pub fn len(&self) -> usize {
        self.prefix.len() + if self.tagged { TAG } else { 0 } + self.suffix.len()
    }

    /// The SHA-256 of the body of exchange `id`, in hex.
    pub fn sha256(&self, id: u64) -> String {
        let mut hasher = self.state.clone();
        if self.tagged {
            hasher.update(tag(id));
        }
        hasher.update(&self.suffix);
        hex(&hasher.finalize())
    }
}

/// Templates built so far, by kind and size.
type Cache = Mutex<HashMap<(Kind, usize), Arc<Template>>>;

/// The template for `kind` and `size`, built once per process.
pub fn template(kind: Kind, size: usize) -> Arc<Template> {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(found) = cache.lock().unwrap().get(&(kind, size)) {
        return found.clone();
    }
    // Built outside the lock: an 8 MiB template takes a while in a debug build.
    let built = Arc::new(Template::build(kind, size));
    assert_eq!(built.len(), size, "{kind:?} template of {size} bytes");
    cache
        .lock()
        .unwrap()
        .entry((kind, size))
        .or_insert(built)
        .clone()
}
