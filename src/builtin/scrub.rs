//! Leak detection for `[scrub]`: does a 5xx body show the upstream's internals?
//!
//! The normalize layer runs [`Scrubber::find`] over an inspected 5xx body. On a [`Leak`] the
//! body is replaced by a problem document and the original is logged once, cut short with
//! [`excerpt`] and tagged with the request id, so the text reaches operators and never clients
//! (CWE-209, reliability B7).
//!
//! Every pattern, the defaults and the ones a config adds, is compiled into one
//! `regex::bytes::RegexSet` when the config loads, so a body is scanned once, in linear time,
//! however many patterns there are; `find` itself cannot fail. The defaults aim at what real
//! stacks print (tracebacks, stack frames, source paths with line numbers, database errors,
//! private addresses) and are written not to fire on ordinary error JSON, timestamps, UUIDs,
//! version numbers or a plain HTML error page. They read bodies as bytes, ASCII-only
//! (`(?-u)`), and also match the JSON- and HTML-escaped forms a trace takes inside a string or a
//! page (`\"`, `\/`, `&quot;`, `&lt;`).

use regex::bytes::{RegexSet, RegexSetBuilder};

pub use crate::pattern::MAX_PATTERN_LEN;
use crate::pattern::{self, PatternError, SIZE_LIMIT as PATTERN_SIZE_LIMIT};

/// Cap on the combined set's compiled program, before added patterns: the defaults compile to
/// about 256 KiB. Each added pattern adds its own limit.
const SET_SIZE_LIMIT: usize = 2 << 20;

/// Cap on the combined set's lazy DFA cache (per thread, grown only as a body needs it), before
/// added patterns. Ordinary bodies need a few hundred KiB; a hostile body built from fragments
/// of every pattern needs about 4 MiB, and with less the set falls back to an engine up to 200
/// times slower.
const SET_DFA_LIMIT: usize = 8 << 20;

/// The `kind` of a match from a pattern the config added.
pub const CUSTOM: &str = "custom";

/// A reason to replace a body: which kind of internals it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leak {
    /// One of `python-traceback`, `java-stack`, `dotnet-stack`, `node-stack`, `go-panic`,
    /// `ruby-stack`, `php-error`, `sql-error`, `file-path`, `private-address`, `custom`: a
    /// bounded metric label and log field, never the matched text.
    pub kind: &'static str,
}

/// Why the scrub patterns could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum ScrubError {
    /// An added pattern exceeds [`MAX_PATTERN_LEN`].
    #[error("scrub.patterns[{index}]: regex too long ({len} bytes, at most 4096)")]
    TooLong {
        /// Position in the added patterns.
        index: usize,
        /// Its length in bytes.
        len: usize,
    },
    /// An added pattern is not a valid regex, or is too big once compiled.
    #[error("scrub.patterns[{index}] = {pattern:?}: invalid regex: {reason}")]
    BadPattern {
        /// Position in the added patterns.
        index: usize,
        /// The pattern as given.
        pattern: String,
        /// The regex crate's explanation, on one line.
        reason: String,
    },
    /// Every pattern compiled alone, but not all of them together.
    #[error("scrub patterns: too big once compiled together: {reason}")]
    TooBig {
        /// The regex crate's explanation, on one line.
        reason: String,
    },
}

/// Octet of an IPv4 address, 0–255 without leading zeros.
macro_rules! octet {
    () => {
        r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
    };
}

/// A path separator, raw or JSON-escaped (PHP's `json_encode` writes `\/`).
macro_rules! slash {
    () => {
        r"(?:/|\\/)"
    };
}

/// A double quote, raw, JSON-escaped or as an HTML reference.
macro_rules! dquote {
    () => {
        r#"(?:\\?"|&quot;|&\#34;|&\#x22;)"#
    };
}

/// A single quote or backtick, raw or as an HTML reference.
macro_rules! squote {
    () => {
        r"(?:'|`|&\#39;|&\#x27;|&apos;|&\#96;|&\#x60;)"
    };
}

/// The default patterns, most specific first: when a body matches several, the first names the
/// leak. Each is compiled with `(?-u)`: ASCII classes, bytes in any encoding.
///
/// They are written in closed form: each anchors on a distinctive token (`, line 12, in `,
/// `(Foo.java:42)`, `ORA-00942`) and spans only narrow classes (identifier or path characters,
/// never "anything up to the end of the line"). An open span stays live across the text that
/// follows it, and a set of them multiplies the lazy DFA's states until its cache thrashes and
/// the scan drops to a far slower engine; in closed form the whole set scans a hostile 256 KiB
/// body in about a millisecond with the default 2 MiB cache.
const DEFAULTS: [(&str, &str); 10] = [
    (
        "python-traceback",
        concat!(
            r"Traceback\s*(?:<[a-z]+>\s*)?\(most recent call last\)",
            // Frame lines: `File "/app/views.py", line 12, in index`, raw, JSON- or
            // HTML-escaped; and Django's debug page, `/app/views.py</span>, line 12`.
            "|",
            dquote!(),
            r", line [0-9]+, in [A-Za-z_<]",
            r#"|\.py(?:\\?"|&quot;|&\#34;|</[a-z]+>)?, line [0-9]+"#,
        ),
    ),
    (
        "java-stack",
        concat!(
            // Frame ends: `(Foo.java:42)`, `(Foo.kt:7)`, `(Unknown Source)`, `(Native Method)`.
            r"\([A-Za-z0-9_$-]+\.(?:java|kt|kts|scala|groovy|clj):[0-9]+\)",
            r"|(?:\s|\\t)at [A-Za-z0-9_$./]+\((?:Unknown Source|Native Method)\)",
            r"|at [a-z][A-Za-z0-9_$]*(?:\.[A-Za-z0-9_$]+)+\.(?:<init>|&lt;init&gt;|<clinit>)\(",
            r#"|Exception in thread ""#,
            r"|Caused by: [a-z][A-Za-z0-9_$]*\.[A-Za-z0-9_$.]*(?:Exception|Error)\b",
            r"|\b(?:java|javax|jakarta|sun|com\.sun|org\.springframework|org\.hibernate|org\.apache)",
            r"\.(?:[A-Za-z0-9_$]+\.)*[A-Za-z0-9_$]*(?:Exception|Error)\b",
        ),
    ),
    (
        "dotnet-stack",
        concat!(
            // `at Acme.Foo.Bar() in C:\src\Foo.cs:line 42`.
            r"\.(?:cs|vb|fs|cshtml|vbhtml|razor|aspx|ascx|asax):line [0-9]+",
            r"|at (?:System|Microsoft)\.[A-Za-z0-9_.`]+(?:\[[A-Za-z0-9_.,` ]*\])?\(",
            r"|\b(?:System|Microsoft)\.(?:[A-Za-z0-9_]+\.)*[A-Za-z0-9_]*Exception\b",
            r"|--- End of (?:inner exception )?stack trace",
            // The ASP.NET error page: `[NullReferenceException: Object reference not set …]`.
            r"|\[[A-Z][A-Za-z0-9_.]*Exception: ",
            r"|Object reference not set to an instance of an object",
        ),
    ),
    (
        "node-stack",
        concat!(
            // `(/app/server.js:10:5)`, `at /app/server.js:10:5`: a script with line and column.
            r"\.(?:[cm]?js|tsx?|jsx|vue|coffee):[0-9]+:[0-9]+",
            // Node's own frames: `(node:internal/process/task_queues:95:5)`.
            r"|\(node:[A-Za-z0-9_/.-]+:[0-9]+:[0-9]+\)",
        ),
    ),
    (
        "go-panic",
        concat!(
            r"goroutine [0-9]+ \[[A-Za-z0-9 ,]+\]:",
            r"|panic: runtime error: ",
            r"|\bruntime\.gopanic\b",
            // Frame lines: `/app/main.go:12 +0x1d`.
            r"|\.go:[0-9]+ \+0x[0-9a-f]+",
        ),
    ),
    (
        "ruby-stack",
        concat!(
            // `app/models/user.rb:12:in 'find'` (Ruby 3.4) or `` …:in `find' `` (older).
            r"\.(?:rb|erb|rake|haml|slim|builder|jbuilder|ru):[0-9]+:in ",
            squote!(),
            r"|\b(?:ActiveRecord|ActionView|ActionController|ActionDispatch|ActiveSupport",
            r"|ActiveModel|ActionMailer|ActiveJob)::[A-Z][A-Za-z]+",
            r"|\bnil:NilClass\b",
        ),
    ),
    (
        "php-error",
        concat!(
            // `in /var/www/index.php on line 7`, also as PHP prints it in HTML (`<b>…</b>`).
            r"\.(?:php[0-9]?|phtml|inc)(?:</b>)? on line (?:<b>)?[0-9]+",
            // Stack frames: `#0 /var/www/lib/Db.php(42): Db->query()`.
            r"|\.(?:php[0-9]?|phtml|inc)\([0-9]+\): ",
            r"|PHP (?:Fatal error|Parse error|Warning|Notice|Deprecated|Stack trace):",
            r"|(?:Fatal|Parse) error(?:</b>)?: +(?:<b>)?(?:Uncaught |Allowed memory size|",
            r"Maximum execution time|Call to (?:a member|undefined)|syntax error)",
            r"|Stack trace:(?:\s|<br\s*/?>|\\n)*\#0 ",
        ),
    ),
    (
        "sql-error",
        concat!(
            r"(?i:you have an error in your sql syntax)",
            r"|(?i:syntax error at (?:or near|end of input))",
            r"|(?i:(?:relation|column|table|function|schema|database|role) )",
            dquote!(),
            r"[A-Za-z0-9_.$-]+",
            dquote!(),
            r"(?i:(?: of relation )",
            dquote!(),
            r"[A-Za-z0-9_.$-]+",
            dquote!(),
            r")?(?i: does not exist)",
            r"|(?i:duplicate key value violates unique constraint)",
            r"|(?i:violates (?:foreign key|not-null|check|exclusion) constraint)",
            r"|\bORA-[0-9]{5}\b|\b(?:PLS|TNS)-[0-9]{5}\b",
            r"|(?i:incorrect syntax near)",
            r"|(?i:unclosed quotation mark after the character string)",
            r"|(?i:invalid (?:object|column) name )",
            squote!(),
            r"|Msg [0-9]+, Level [0-9]+, State [0-9]+",
            r"|(?i:no such (?:table|column|function): )",
            r"|\bSQLITE_[A-Z]{3,}\b",
            r"|\b(?:sqlite3|psycopg2?|pymysql|MySQLdb|mysql\.connector|sqlalchemy|django\.db",
            r"|cx_Oracle|pyodbc)\.[A-Za-z_.]*(?:Error|Exception|errors\.[A-Za-z]+)\b",
            r"|(?i:\bsql ?state)[\[:= ]{0,3}[0-9A-Z]{5}\b",
            r"|\bERROR [0-9]{4} \([0-9A-Z]{5}\)",
            r"|(?i:\bunknown column )",
            squote!(),
            r"|(?i:\btable )",
            squote!(),
            r"[A-Za-z0-9_.$-]+",
            squote!(),
            r"(?i: doesn't exist)",
            r"|\b[A-Za-z]*(?:SQL|Sql)[A-Za-z]*Exception\b",
            r"|\b(?:PG|Mysql2|SQLite3)::[A-Z][A-Za-z]+",
            // Statement text as ORMs print it, in upper case: `SELECT "users".*`, `SELECT t0.id`,
            // `SELECT * FROM`, `SELECT COUNT(`, `INSERT INTO orders`, `UPDATE users SET`.
            r#"|\bSELECT\s+(?:\*\s|DISTINCT\s|COUNT\(|TOP\s+[0-9]|(?:\\?"|`|\[)?[A-Za-z_][A-Za-z0-9_]*"#,
            r#"(?:\\?"|`|\])?\.(?:\*|\\?"|`|\[|[A-Za-z_]))"#,
            r#"|\b(?:INSERT\s+INTO|DELETE\s+FROM)\s+(?:\\?"|`|\[)?[A-Za-z_]"#,
            r#"|\bUPDATE\s+(?:\\?"|`|\[)?[A-Za-z_][A-Za-z0-9_.`\]]*(?:\\?")?\s+SET\s"#,
        ),
    ),
    (
        "file-path",
        concat!(
            // Under a system root: `/var/www/…`, `/usr/lib/…`, `/etc/…`.
            r"(?:^|[^A-Za-z0-9_.~/\\-])",
            slash!(),
            r"(?:var",
            slash!(),
            r"(?:www|lib|log|app|opt)|usr",
            slash!(),
            r"(?:local|lib|lib64|share|src|include)|opt|srv|etc|root|tmp)",
            slash!(),
            r"[A-Za-z0-9_.@+~-]",
            // An absolute path, to a file only a server has (never a URL on a web page), or
            // followed by a line number: `/app/index.js:10`, `/code/lib/Db.inc(12)`.
            r"|(?:^|[^A-Za-z0-9_.~/\\-])",
            slash!(),
            r"(?:[A-Za-z0-9_.@+~-]+",
            slash!(),
            r")+[A-Za-z0-9_.@+~-]+\.(?:(?:py|pyc|rb|java|class|jar|war|kt|scala|groovy|go|cs|vb|fs",
            r"|cshtml|rs|ex|exs|erl|pl|pm|c|cc|cpp|h|hpp|so|dll|ini|env|properties|conf|cfg",
            r"|sqlite3?)\b|[A-Za-z0-9]{1,12}(?::[0-9]+|, line [0-9]+|\([0-9]+\)| on line))",
            // Windows: `C:\src\Foo.cs`, `C:\\inetpub\\…` (JSON), `D:/app/…`.
            r"|\b[A-Za-z]:(?:\\{1,2}|/)(?:Program Files(?: \(x86\))?|[A-Za-z0-9_.$~-]+)",
            r"(?:\\{1,2}|/)[A-Za-z0-9_.$~-]",
            // UNC: `\\fileserver\share\`.
            r"|\\\\(?:\\\\)?[A-Za-z0-9_.-]+\\(?:\\)?[A-Za-z0-9_.$-]+\\",
        ),
    ),
    (
        "private-address",
        concat!(
            // RFC 1918, loopback and link-local IPv4, not inside a longer dotted number.
            r"(?:^|[^0-9.])(?:10\.",
            octet!(),
            r"\.",
            octet!(),
            r"\.",
            octet!(),
            r"|172\.(?:1[6-9]|2[0-9]|3[01])\.",
            octet!(),
            r"\.",
            octet!(),
            r"|192\.168\.",
            octet!(),
            r"\.",
            octet!(),
            r"|127\.",
            octet!(),
            r"\.",
            octet!(),
            r"\.",
            octet!(),
            r"|169\.254\.",
            octet!(),
            r"\.",
            octet!(),
            r")(?:$|[^0-9.]|\.(?:$|[^0-9]))",
            // fc00::/7 (unique local) and fe80::/10 (link-local) IPv6.
            r"|(?:^|[^0-9A-Za-z:])(?:[fF][cCdD][0-9a-fA-F]{2}|[fF][eE][89aAbB][0-9a-fA-F])",
            r"(?::[0-9a-fA-F]{0,4}){2,7}(?:$|[^0-9A-Za-z:])",
            r"|\[::1\]",
            r"|\blocalhost:[0-9]{2,5}\b",
            r"|\.svc\.cluster\.local\b|\.(?:ec2|compute)\.internal\b",
        ),
    ),
];

/// The compiled leak patterns: the defaults, then the ones the config added.
#[derive(Debug, Clone)]
pub struct Scrubber {
    set: RegexSet,
    /// The kind of each pattern in `set`, by index.
    kinds: Vec<&'static str>,
}

impl Scrubber {
    /// Compiles the default patterns plus `extra` (the config's `scrub.patterns`), each extra
    /// checked alone first so an error names it.
    pub fn new(extra: &[String]) -> Result<Scrubber, ScrubError> {
        for (index, pattern) in extra.iter().enumerate() {
            pattern::bytes(pattern).map_err(|e| match e {
                PatternError::TooLong { len } => ScrubError::TooLong { index, len },
                PatternError::Invalid(e) => ScrubError::BadPattern {
                    index,
                    pattern: pattern.clone(),
                    reason: pattern::describe(&e),
                },
            })?;
        }
        let defaults = DEFAULTS
            .iter()
            .map(|(_, pattern)| format!("(?-u){pattern}"));
        let added = extra.len().saturating_mul(PATTERN_SIZE_LIMIT);
        let set = RegexSetBuilder::new(defaults.chain(extra.iter().cloned()))
            .size_limit(SET_SIZE_LIMIT.saturating_add(added))
            .dfa_size_limit(SET_DFA_LIMIT.saturating_add(added))
            .build()
            .map_err(|e| ScrubError::TooBig {
                reason: pattern::describe(&e),
            })?;
        let kinds = DEFAULTS
            .iter()
            .map(|(kind, _)| *kind)
            .chain(extra.iter().map(|_| CUSTOM))
            .collect();
        Ok(Scrubber { set, kinds })
    }

    /// The first kind of internals `body` shows, in the order of the defaults, then the added
    /// patterns; `None` if it shows none.
    pub fn find(&self, body: &[u8]) -> Option<Leak> {
        // Most bodies show nothing: a plain match stops at the first hit and skips the
        // overlapping search that naming the pattern needs (28 instructions a byte of a 64 KiB
        // body for that search alone).
        if !self.set.is_match(body) {
            return None;
        }
        let first = self.set.matches(body).into_iter().next()?;
        self.kinds.get(first).map(|&kind| Leak { kind })
    }
}

/// The start of `body` for a log line: invalid UTF-8 replaced, control and bidirectional
/// formatting characters escaped (`\n`, `\u{1b}`), at most `max` bytes cut on a character
/// boundary, and `…` appended when anything was cut.
pub fn excerpt(body: &[u8], max: usize) -> String {
    // Every input byte yields at least one output byte, so `max` bytes of output never need
    // more than `max` bytes of input, plus up to 3 to finish the last character.
    let take = body.len().min(max.saturating_add(4));
    let text = String::from_utf8_lossy(&body[..take]);
    let mut out = String::with_capacity(max.min(take.saturating_mul(2)) + 3);
    let mut cut = take < body.len();
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let escaped;
        let piece: &str = match c {
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if c.is_control() || is_format(c) => {
                escaped = c.escape_unicode().to_string();
                &escaped
            }
            c => c.encode_utf8(&mut buf),
        };
        if out.len() + piece.len() > max {
            cut = true;
            break;
        }
        out.push_str(piece);
    }
    if cut {
        out.push('…');
    }
    out
}

/// Invisible characters that can reorder or hide text in a terminal or log viewer
/// (Trojan Source, CVE-2021-42574).
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubber() -> Scrubber {
        Scrubber::new(&[]).expect("the default patterns compile")
    }

    fn kind(body: &str) -> Option<&'static str> {
        scrubber().find(body.as_bytes()).map(|leak| leak.kind)
    }

    const PYTHON: &str = "Traceback (most recent call last):\n  File \"/usr/lib/python3.11/\
        site-packages/flask/app.py\", line 1484, in full_dispatch_request\n    rv = \
        self.dispatch_request()\n  File \"/app/app.py\", line 12, in index\n    return 1 / 0\n\
        ZeroDivisionError: division by zero\n";

    const DJANGO_500: &str = "<div id=\"summary\"><h1>ZeroDivisionError at /api/</h1><pre \
        class=\"exception_value\">division by zero</pre><table class=\"meta\"><tr><th \
        scope=\"row\">Exception Location:</th><td><span class=\"fname\">/srv/app/views.py\
        </span>, line 12, in index</td></tr></table></div>";

    const WERKZEUG: &str = "<h2 class=\"traceback\">Traceback <em>(most recent call last)</em>\
        </h2><div class=\"traceback\"><ul><li><div class=\"frame\"><h4>File <cite \
        class=\"filename\">\"/app/app.py\"</cite>, line <em class=\"line\">5</em></h4></div>\
        </li></ul></div>";

    const PYTHON_JSON: &str = "{\"error\":\"Traceback (most recent call last):\\n  File \
        \\\"/app/app.py\\\", line 5, in <module>\\nKeyError: 'x'\"}";

    const PYTHON_FRAME_HTML: &str = "<pre>File &quot;/app/jobs.py&quot;, line 88, in run</pre>";

    const SPRING: &str = "{\"timestamp\":\"2024-01-01T00:00:00.000+00:00\",\"status\":500,\
        \"error\":\"Internal Server Error\",\"trace\":\"java.lang.NullPointerException: \
        Cannot invoke \\\"String.length()\\\"\\n\\tat com.acme.users.UserService.find\
        (UserService.java:42)\\n\\tat java.base/java.lang.Thread.run(Thread.java:833)\\n\",\
        \"path\":\"/api/users/7\"}";

    const JAVA_PLAIN: &str = "Exception in thread \"main\" java.lang.IllegalStateException: \
        boom\n\tat com.acme.Foo.bar(Foo.java:42)\n\tat com.acme.Foo.<init>(Unknown Source)\n";

    const JAVA_NATIVE_JSON: &str = "{\"trace\":\"\\tat sun.nio.ch.Net.connect0(Native Method)\"}";

    const JAVA_FRAME_ONLY: &str = "<pre>\tat com.acme.Foo.&lt;init&gt;(Foo.java:42)</pre>";

    const JAVA_CAUSED_BY: &str = "Caused by: com.acme.billing.LedgerClosedException: period \
        2023-12 closed";

    const DOTNET: &str = "System.InvalidOperationException: Sequence contains no elements\r\n   \
        at System.Linq.ThrowHelper.ThrowNoElementsException()\r\n   at Acme.Foo.Bar() in \
        C:\\src\\Acme\\Foo.cs:line 42\r\n";

    const DOTNET_FRAME_ONLY: &str = "   at Acme.Orders.OrderService.Place(Order order) in \
        D:\\build\\Acme.Orders\\OrderService.cs:line 42";

    const ASPNET_YSOD: &str = "<h2> <i>Object reference not set to an instance of an object.\
        </i> </h2></span><b> Exception Details: </b>System.NullReferenceException: Object \
        reference not set to an instance of an object.<br><br>";

    const NODE: &str = "TypeError: Cannot read properties of undefined (reading 'id')\n    at \
        Object.<anonymous> (/app/server.js:10:5)\n    at Module._compile \
        (node:internal/modules/cjs/loader:1256:14)\n";

    const NODE_JSON: &str = "{\"message\":\"boom\",\"stack\":\"Error: boom\\n    at \
        /srv/api/routes/users.js:31:11\\n    at Layer.handle [as handle_request] \
        (/srv/api/node_modules/express/lib/router/layer.js:95:5)\"}";

    const NODE_INTERNAL: &str = "Error: connect ECONNREFUSED\n    at \
        TCPConnectWrap.afterConnect [as oncomplete] (node:net:1595:16)";

    const NODE_HTML: &str = "<pre>Error: boom<br> &nbsp; &nbsp;at Object.&lt;anonymous&gt; \
        (C:\\app\\index.ts:3:9)</pre>";

    const GO: &str = "panic: runtime error: invalid memory address or nil pointer \
        dereference\n[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4a1b2c]\n\n\
        goroutine 1 [running]:\nmain.main()\n\t/app/main.go:12 +0x1d\nexit status 2\n";

    const GO_GOROUTINE_ONLY: &str = "goroutine 7 [chan receive, 2 minutes]:";

    const RUBY_BACKTICK: &str = "NoMethodError (undefined method `name' for \
        nil):\n  app/models/user.rb:12:in `find'\n";

    const RUBY_QUOTE: &str = "app/models/user.rb:12:in 'User.find'";

    const RUBY_HTML: &str = "<code>app/controllers/users_controller.rb:7:in &#39;show&#39;\
        </code>";

    const RAILS_CLASS: &str = "ActiveRecord::RecordNotUnique in UsersController#create";

    const PHP: &str = "<br />\n<b>Fatal error</b>:  Uncaught Error: Call to undefined \
        function mysql_connect() in /var/www/html/index.php:7\nStack trace:\n#0 {main}\n  \
        thrown in <b>/var/www/html/index.php</b> on line <b>7</b><br />\n";

    const PHP_PLAIN: &str = "Fatal error: Allowed memory size of 134217728 bytes exhausted in \
        index.php on line 7";

    const PHP_FRAME: &str = "#0 lib/Db.php(42): Db->query('SELECT 1')";

    const PHP_JSON_PATH: &str = "{\"file\":\"\\/var\\/www\\/app\\/Kernel.php\"}";

    fn fixtures() -> Vec<(&'static str, &'static str, &'static str)> {
        vec![
            ("python traceback", PYTHON, "python-traceback"),
            ("django debug 500", DJANGO_500, "python-traceback"),
            ("werkzeug debugger", WERKZEUG, "python-traceback"),
            ("python traceback in json", PYTHON_JSON, "python-traceback"),
            (
                "python frame in html",
                PYTHON_FRAME_HTML,
                "python-traceback",
            ),
            ("spring trace", SPRING, "java-stack"),
            ("java plain", JAVA_PLAIN, "java-stack"),
            ("java frame only", JAVA_FRAME_ONLY, "java-stack"),
            ("java native frame in json", JAVA_NATIVE_JSON, "java-stack"),
            ("java caused by", JAVA_CAUSED_BY, "java-stack"),
            ("dotnet", DOTNET, "dotnet-stack"),
            ("dotnet frame only", DOTNET_FRAME_ONLY, "dotnet-stack"),
            ("asp.net error page", ASPNET_YSOD, "dotnet-stack"),
            ("node", NODE, "node-stack"),
            ("node in json", NODE_JSON, "node-stack"),
            ("node internal frame", NODE_INTERNAL, "node-stack"),
            ("node in html", NODE_HTML, "node-stack"),
            ("go panic", GO, "go-panic"),
            ("go goroutine header", GO_GOROUTINE_ONLY, "go-panic"),
            ("ruby backtick", RUBY_BACKTICK, "ruby-stack"),
            ("ruby quote", RUBY_QUOTE, "ruby-stack"),
            ("ruby in html", RUBY_HTML, "ruby-stack"),
            ("rails exception class", RAILS_CLASS, "ruby-stack"),
            ("php fatal error html", PHP, "php-error"),
            ("php plain", PHP_PLAIN, "php-error"),
            ("php frame", PHP_FRAME, "php-error"),
            ("php path in json", PHP_JSON_PATH, "file-path"),
        ]
    }

    #[test]
    fn stack_traces_are_found() {
        for (name, body, expected) in fixtures() {
            assert_eq!(kind(body), Some(expected), "{name}: {body}");
        }
    }

    #[test]
    fn sql_errors_are_found() {
        let table: &[(&str, &str)] = &[
            (
                "postgres relation",
                "ERROR:  relation \"users\" does not exist\nLINE 1: SELECT",
            ),
            (
                "postgres column json",
                "{\"error\":\"column \\\"nme\\\" does not exist\"}",
            ),
            ("postgres syntax", "ERROR: syntax error at or near \"FORM\""),
            (
                "postgres unique",
                "duplicate key value violates unique constraint \"users_pkey\"",
            ),
            (
                "postgres fk",
                "insert or update on table \"orders\" violates foreign key constraint",
            ),
            ("postgres sqlstate", "SQLSTATE 42P01"),
            ("psycopg2", "psycopg2.errors.UndefinedTable: relation"),
            (
                "sqlalchemy",
                "sqlalchemy.exc.OperationalError: (OperationalError)",
            ),
            ("ruby pg", "PG::UndefinedTable: ERROR"),
            (
                "jdbc",
                "org.postgresql.util.PSQLException: The connection attempt failed.",
            ),
            (
                "mysql syntax",
                "You have an error in your SQL syntax; check the manual that \
                corresponds to your MySQL server version for the right syntax to use near",
            ),
            (
                "mysql cli",
                "ERROR 1146 (42S02): Table 'shop.users' doesn't exist",
            ),
            ("mysql table", "Table 'shop.users' doesn't exist"),
            (
                "mysql column html",
                "Unknown column &#39;nme&#39; in &#39;field list&#39;",
            ),
            ("pdo", "SQLSTATE[HY000] [2002] Connection refused"),
            ("oracle", "ORA-00942: table or view does not exist"),
            ("oracle tns", "TNS-12541: TNS:no listener"),
            (
                "sql server syntax",
                "Incorrect syntax near the keyword 'FROM'.",
            ),
            (
                "sql server quote",
                "Unclosed quotation mark after the character string 'abc'.",
            ),
            ("sql server object", "Invalid object name 'dbo.Users'."),
            ("sql server msg", "Msg 208, Level 16, State 1, Line 1"),
            (
                "sqlite table",
                "sqlite3.OperationalError: no such table: users",
            ),
            ("sqlite code", "SQLITE_CONSTRAINT: UNIQUE constraint failed"),
            ("sqlite no such column", "no such column: nme"),
            (
                "statement",
                "query failed: SELECT \"users\".* FROM \"users\" WHERE id = 7",
            ),
            ("insert", "INSERT INTO orders (id) VALUES (1)"),
            ("update", "UPDATE users SET name = 'x'"),
        ];
        for (name, body) in table {
            assert_eq!(kind(body), Some("sql-error"), "{name}: {body}");
        }
    }

    #[test]
    fn paths_are_found() {
        let table: &[(&str, &str)] = &[
            ("system root", "could not open /etc/app/secrets"),
            ("var www", "in /var/www/html/"),
            ("usr lib", "(/usr/lib/jvm/java-17)"),
            (
                "server-only extension",
                "loading /home/deploy/app/settings.py",
            ),
            ("config file", "cannot parse /deploy/conf/app.properties"),
            ("extension in quotes", "\"/srv2/api/handlers/user.py\""),
            ("line number", "error at /app/src/index.js:42"),
            ("dotted file name", "in /app/static/app.min.js:1"),
            ("line number parens", "/code/lib/Db.inc(12)"),
            ("windows", "C:\\inetpub\\wwwroot\\web.config"),
            ("windows json", "{\"file\":\"C:\\\\src\\\\Acme\\\\Foo.cs\"}"),
            ("windows forward", "D:/builds/agent/_work/1/s/src/x"),
            ("unc", "\\\\fileserver\\share\\reports"),
        ];
        for (name, body) in table {
            assert_eq!(kind(body), Some("file-path"), "{name}: {body}");
        }
    }

    #[test]
    fn private_addresses_are_found() {
        let table: &[(&str, &str)] = &[
            ("ten", "connect to 10.0.0.1 failed"),
            (
                "ten with port",
                "dial tcp 10.12.3.4:5432: connect: connection refused",
            ),
            ("172.16", "upstream 172.16.0.9:8080"),
            ("172.31", "http://172.31.255.255/health"),
            ("192.168", "host=192.168.1.20"),
            ("loopback", "connect ECONNREFUSED 127.0.0.1:6379"),
            ("link-local", "metadata 169.254.169.254 timed out"),
            ("end of sentence", "refused by 10.1.2.3."),
            ("ula in url", "http://[fd12:3456:789a::1]:8080/"),
            ("ula bare", "fc00::5 unreachable"),
            ("link-local v6", "fe80::1%eth0 down"),
            ("v6 loopback", "http://[::1]:3000"),
            ("localhost port", "redis://localhost:6379"),
            ("kubernetes", "postgres.db.svc.cluster.local"),
            ("aws", "ip-10-0-0-1.ec2.internal"),
        ];
        for (name, body) in table {
            assert_eq!(kind(body), Some("private-address"), "{name}: {body}");
        }
    }

    #[test]
    fn ordinary_bodies_are_not_leaks() {
        let table: &[(&str, &str)] = &[
            ("error json", "{\"error\":\"internal error\",\"code\":500}"),
            (
                "message json",
                "{\"message\":\"Service temporarily unavailable\"}",
            ),
            (
                "spring default error",
                "{\"timestamp\":\"2024-01-01T00:00:00.000+00:00\",\"status\":500,\"error\":\
                 \"Internal Server Error\",\"path\":\"/api/users/42\"}",
            ),
            (
                "uuid",
                "{\"request_id\":\"123e4567-e89b-12d3-a456-426614174000\"}",
            ),
            ("ula-looking uuid", "fc00a1b2-e89b-12d3-a456-426614174000"),
            ("public address", "connect to 1.2.3.4 failed"),
            ("public 172", "172.32.0.1 and 172.15.255.255"),
            ("version", "release 1.2.3.4 and 2.10.0"),
            (
                "dotted number containing a private-looking run",
                "build 1.10.0.0.1",
            ),
            (
                "iso timestamps",
                "2024-03-10T10:00:00.000Z 2024-03-10 10:00:00+01:00",
            ),
            ("german date", "am 10.01.2024 um 10.00"),
            (
                "api paths",
                "{\"path\":\"/api/v2/users/42/orders\",\"next\":\"/home/index\"}",
            ),
            (
                "urls",
                "see https://example.com/docs/errors#500 or /help/index.php",
            ),
            (
                "docs links",
                "{\"docs\":\"/api/openapi.yaml\",\"log\":\"/status/today.log\"}",
            ),
            (
                "country domains",
                "https://shop.example.pl/ and https://www.example.com.py/x",
            ),
            (
                "prose with at",
                "Failed at step 3. Try again at 10:30, or contact us at help.",
            ),
            ("prose with select", "Please select a plan from the list."),
            (
                "prose with error",
                "Fatal error: the database is unavailable.",
            ),
            (
                "json escapes",
                "{\"message\":\"line one\\nline two\\tend\",\"a\":\"error:\\n\"}",
            ),
            ("css", ".fcab::before { content: ''; } .fd00::after{}"),
            ("localhost without port", "Server at localhost Port 80"),
            ("windows-looking word", "Note: this is fine"),
            ("plain html 500", PLAIN_500),
            ("apache 500", APACHE_500),
            ("nginx 502", NGINX_502),
        ];
        let scrubber = scrubber();
        for (name, body) in table {
            assert_eq!(scrubber.find(body.as_bytes()), None, "{name}: {body}");
        }
    }

    const PLAIN_500: &str = "<!DOCTYPE html><html><head><title>Something went wrong</title>\
        <link rel=\"stylesheet\" href=\"/static/css/site.css\"><script \
        src=\"/static/js/app.min.js\"></script><style>body{font:14px sans-serif}</style></head>\
        <body><img src=\"/images/logo.png\" alt=\"\"><h1>Something went wrong</h1><p>We are \
        working on it. Please try again at 10:30 or go <a href=\"/index.php\">home</a>.</p><p>\
        Reference: 7f3c2a9e-0b1d-4c5e-9f00-123456789abc, 2024-03-10T10:00:00Z</p></body></html>";

    const APACHE_500: &str = "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n\
        <title>500 Internal Server Error</title>\n</head><body>\n<h1>Internal Server Error</h1>\n\
        <p>The server encountered an internal error or\nmisconfiguration and was unable to \
        complete\nyour request.</p>\n<p>Please contact the server administrator at \n \
        webmaster@localhost to inform them of the time this error occurred,\n and the actions \
        you performed just before this error.</p>\n<p>More information about this error may be \
        available\nin the server error log.</p>\n<hr>\n<address>Apache/2.4.57 (Debian) Server \
        at localhost Port 80</address>\n</body></html>\n";

    const NGINX_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
        <center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n\
        </html>\r\n";

    #[test]
    fn first_default_kind_wins() {
        // A Python traceback also names files and may quote SQL: the traceback is the finding.
        let body = "Traceback (most recent call last):\n  File \"/app/db.py\", line 3\n\
                    sqlite3.OperationalError: no such table: users";
        assert_eq!(kind(body), Some("python-traceback"));
    }

    #[test]
    fn extra_patterns_extend_the_defaults() {
        let scrubber =
            Scrubber::new(&["(?i)acme-internal-[0-9]+".into(), "secret".into()]).unwrap();
        assert_eq!(
            scrubber.find(b"host ACME-INTERNAL-7 down"),
            Some(Leak { kind: CUSTOM })
        );
        assert_eq!(scrubber.find(b"a secret"), Some(Leak { kind: CUSTOM }));
        assert_eq!(
            scrubber.find(b"at com.acme.Foo.bar(Foo.java:1) secret"),
            Some(Leak { kind: "java-stack" })
        );
        assert_eq!(scrubber.find(b"{\"error\":\"internal\"}"), None);
    }

    #[test]
    fn bad_extra_patterns_are_rejected() {
        let long = "a".repeat(MAX_PATTERN_LEN + 1);
        let table: &[(Vec<String>, &str)] = &[
            (vec!["ok".into(), "(a".into()], "scrub.patterns[1] = \"(a\": invalid regex: unclosed group"),
            (vec![long], "scrub.patterns[0]: regex too long (4097 bytes, at most 4096)"),
            (vec!["\\w{1000}{1000}".into()], "scrub.patterns[0] = \"\\\\w{1000}{1000}\": invalid regex: too big once compiled (limit 1024 KiB); simplify it"),
        ];
        for (patterns, message) in table {
            let error = Scrubber::new(patterns).unwrap_err();
            assert_eq!(error.to_string(), *message);
        }
        assert!(Scrubber::new(&["a".repeat(MAX_PATTERN_LEN)]).is_ok());
    }

    #[test]
    fn scanning_a_large_body_is_fast() {
        let scrubber = scrubber();
        let mut body = "x y 1.2 <a href=\"/p\">q</a> at Foo ".repeat(256 * 1024 / 32);
        body.truncate(256 * 1024);
        let started = std::time::Instant::now();
        assert_eq!(scrubber.find(body.as_bytes()), None);
        body.push_str("\n  File \"/app/x.py\", line 1");
        assert!(scrubber.find(body.as_bytes()).is_some());
        // Generous: debug builds on a shared machine; linear time is what is checked.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn scanning_near_misses_is_linear() {
        // Fragments that start many patterns without finishing most of them.
        let pieces = [
            "Caused by: a.b",
            "java.x",
            "System.a",
            "/a/b",
            ".c",
            "SELECT \"a",
            "(x.java:1",
            "fd12:34",
            "table 'ab",
            "relation \"x",
            "\" of relation \"",
            "C:\\ab",
            "UPDATE a",
            "[A",
            "Exception",
            ".py",
            ", line 1",
            ".js:1",
            "(node:a",
            "\\\\a\\b",
            "10.0.1",
            "192.168.",
            "goroutine 1 [a",
            "Stack trace:",
            "<br>",
            "\\n",
            "at System.X[",
            "::",
            "a",
            "1",
            "/",
            ".",
            "\"",
            "'",
            ":",
        ];
        let mut body = String::new();
        let mut state = 7u64;
        while body.len() < 256 * 1024 {
            // A fixed linear congruential sequence: varied, and the same on every run.
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let pick = usize::try_from(state >> 33).unwrap_or(0);
            body.push_str(pieces[pick % pieces.len()]);
            if pick.is_multiple_of(4) {
                body.push(' ');
            }
        }
        let scrubber = scrubber();
        let started = std::time::Instant::now();
        let _ = scrubber.find(body.as_bytes());
        let _ = scrubber.find("a/".repeat(128 * 1024).as_bytes());
        let _ = scrubber.find("SELECT a ".repeat(30 * 1024).as_bytes());
        // Quadratic behaviour on 256 KiB would take minutes; debug builds take well under one.
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn excerpts() {
        let table: &[(&[u8], usize, &str)] = &[
            (b"short", 100, "short"),
            (b"exactly", 7, "exactly"),
            (b"too long", 3, "too\u{2026}"),
            (b"", 10, ""),
            (b"abc", 0, "\u{2026}"),
            (b"line\r\nnext\tx", 100, "line\\r\\nnext\\tx"),
            (b"esc\x1b[31m", 100, "esc\\u{1b}[31m"),
            (b"nul\x00", 100, "nul\\u{0}"),
            (b"bad \xff byte", 100, "bad \u{fffd} byte"),
            ("éééé".as_bytes(), 5, "éé\u{2026}"),
            ("ab€".as_bytes(), 4, "ab\u{2026}"),
            (b"\\n stays", 100, "\\n stays"),
            ("rtl\u{202e}txt".as_bytes(), 100, "rtl\\u{202e}txt"),
            (b"escape\nat edge", 7, "escape\u{2026}"),
        ];
        for (body, max, expected) in table {
            let got = excerpt(body, *max);
            assert_eq!(got, *expected, "{body:?} max {max}");
            assert!(got.trim_end_matches('\u{2026}').len() <= *max);
        }
    }

    #[test]
    fn excerpt_of_a_huge_body_reads_only_its_start() {
        let body = vec![b'a'; 10 << 20];
        let got = excerpt(&body, 200);
        assert_eq!(got.len(), 200 + '\u{2026}'.len_utf8());
    }
}
