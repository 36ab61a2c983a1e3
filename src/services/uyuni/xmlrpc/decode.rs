//! Decoding `methodCall` and `methodResponse` documents.
//!
//! Strict on structure (every element where the XML-RPC grammar puts it, nothing else),
//! lenient on struct member order. Only the five predefined entities and character
//! references are expanded; a document type declaration is refused outright, so no
//! entity can be defined. Text inside `<string>` and untyped `<value>` is kept exactly,
//! whitespace included.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;

use super::value::{Struct, Value, parse_datetime};
use super::{Fault, MethodCall, MethodResponse};

/// Size and nesting limits applied while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted document, in bytes.
    pub max_body_bytes: usize,
    /// Deepest accepted nesting of arrays and structs.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 * 1024 * 1024,
            max_depth: 64,
        }
    }
}

/// What went wrong while decoding.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// The body is larger than [`Limits::max_body_bytes`].
    #[error("document of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Body size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Arrays/structs nest deeper than [`Limits::max_depth`].
    #[error("values nest deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// The body is not UTF-8.
    #[error("document is not valid UTF-8")]
    NotUtf8,
    /// The document ended early.
    #[error("document is truncated")]
    Truncated,
    /// The XML itself is malformed.
    #[error("malformed XML: {0}")]
    Xml(String),
    /// A DTD, which could define entities, or an HTML page.
    #[error("not an XML-RPC document: {0}")]
    NotXmlRpc(String),
    /// An entity other than the predefined ones.
    #[error("unknown entity `&{0};`")]
    UnknownEntity(String),
    /// An element or text where the grammar wants something else.
    #[error("expected {expected}, found {found}")]
    Unexpected {
        /// What the grammar allows here.
        expected: String,
        /// What the document has.
        found: String,
    },
    /// A typed value whose text does not parse.
    #[error("invalid <{ty}> value {text:?}")]
    BadValue {
        /// The type tag.
        ty: String,
        /// The text (cut short).
        text: String,
    },
}

/// A decoding failure with the byte position and a short excerpt of the document.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    /// What went wrong.
    pub kind: DecodeErrorKind,
    /// Byte offset in the document near the failure.
    pub position: usize,
    /// A short, printable excerpt of the document around `position`.
    pub excerpt: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at byte {} near {:?}",
            self.kind, self.position, self.excerpt
        )
    }
}

impl std::error::Error for DecodeError {}

/// A printable excerpt of at most ~`width` characters of `text` starting a little before
/// `pos` (used for error messages everywhere in the UYUNI client).
pub fn excerpt(text: &str, pos: usize, width: usize) -> String {
    let mut start = pos.saturating_sub(width / 3).min(text.len());
    while start > 0 && !text.is_char_boundary(start) {
        start -= 1;
    }
    let out: String = text[start..]
        .chars()
        .take(width)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    out
}

const EXCERPT_WIDTH: usize = 60;

/// Decode a `methodCall` document.
pub fn decode_call(body: &[u8], limits: &Limits) -> Result<MethodCall, DecodeError> {
    let text = check_body(body, limits)?;
    let mut p = Parser::new(text, limits);
    p.run(|p| {
        p.prolog("methodCall")?;
        p.expect_start("methodName")?;
        let name = p.text_until_end("methodName")?;
        if !valid_method_name(&name) {
            return Err(p.err(DecodeErrorKind::BadValue {
                ty: "methodName".to_string(),
                text: cut(&name),
            }));
        }
        let mut params = Vec::new();
        match p.next_tag()? {
            Tag::Start(n) if n == "params" => {
                loop {
                    match p.next_tag()? {
                        Tag::Start(n) if n == "param" => {
                            p.expect_start("value")?;
                            params.push(p.value_body(0)?);
                            p.expect_end("param")?;
                        }
                        Tag::End(n) if n == "params" => break,
                        other => return Err(p.unexpected("<param> or </params>", &other)),
                    }
                }
                p.expect_end("methodCall")?;
            }
            Tag::End(n) if n == "methodCall" => {}
            other => return Err(p.unexpected("<params> or </methodCall>", &other)),
        }
        p.epilog()?;
        Ok(MethodCall { name, params })
    })
}

/// Decode a `methodResponse` document: exactly one value, or a fault.
pub fn decode_response(body: &[u8], limits: &Limits) -> Result<MethodResponse, DecodeError> {
    let text = check_body(body, limits)?;
    let mut p = Parser::new(text, limits);
    p.run(|p| {
        p.prolog("methodResponse")?;
        let resp = match p.next_tag()? {
            Tag::Start(n) if n == "params" => {
                p.expect_start("param")?;
                p.expect_start("value")?;
                let v = p.value_body(0)?;
                p.expect_end("param")?;
                p.expect_end("params")?;
                MethodResponse::Success(v)
            }
            Tag::Start(n) if n == "fault" => {
                p.expect_start("value")?;
                let at = p.pos();
                let v = p.value_body(0)?;
                p.expect_end("fault")?;
                let fault = fault_from_value(&v).map_err(|kind| p.err_at(kind, at))?;
                MethodResponse::Fault(fault)
            }
            other => return Err(p.unexpected("<params> or <fault>", &other)),
        };
        p.expect_end("methodResponse")?;
        p.epilog()?;
        Ok(resp)
    })
}

fn fault_from_value(v: &Value) -> Result<Fault, DecodeErrorKind> {
    let bad = |what: &str| DecodeErrorKind::Unexpected {
        expected: "fault struct {faultCode: int, faultString: string}".to_string(),
        found: what.to_string(),
    };
    let s = v.as_struct().ok_or_else(|| bad(&v.summary()))?;
    let code = match s.get("faultCode") {
        Some(Value::Int(i)) => *i,
        Some(other) => return Err(bad(&format!("faultCode {}", other.summary()))),
        None => return Err(bad("no faultCode")),
    };
    let string = match s.get("faultString") {
        Some(Value::String(t)) => t.clone(),
        Some(other) => return Err(bad(&format!("faultString {}", other.summary()))),
        None => return Err(bad("no faultString")),
    };
    Ok(Fault { code, string })
}

fn valid_method_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'/'))
}

fn cut(s: &str) -> String {
    let c: String = s.chars().take(40).collect();
    if c.len() < s.len() {
        format!("{c}…")
    } else {
        c
    }
}

fn check_body<'a>(body: &'a [u8], limits: &Limits) -> Result<&'a str, DecodeError> {
    if body.len() > limits.max_body_bytes {
        let head = String::from_utf8_lossy(&body[..body.len().min(EXCERPT_WIDTH * 2)]);
        return Err(DecodeError {
            kind: DecodeErrorKind::TooLarge {
                size: body.len(),
                limit: limits.max_body_bytes,
            },
            position: 0,
            excerpt: excerpt(&head, 0, EXCERPT_WIDTH),
        });
    }
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    std::str::from_utf8(body).map_err(|e| {
        let at = e.valid_up_to();
        let lossy = String::from_utf8_lossy(body);
        DecodeError {
            kind: DecodeErrorKind::NotUtf8,
            position: at,
            excerpt: excerpt(&lossy, at, EXCERPT_WIDTH),
        }
    })
}

/// One structural item: an element start or end. Text between elements must be
/// whitespace and is skipped by [`Parser::next_tag`].
#[derive(Debug)]
enum Tag {
    Start(Cow<'static, str>),
    End(Cow<'static, str>),
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tag::Start(n) => write!(f, "<{n}>"),
            Tag::End(n) => write!(f, "</{n}>"),
        }
    }
}

/// An event flattened to owned data, so the borrow of the reader ends immediately.
enum Item<'a> {
    Start(Cow<'static, str>),
    End(Cow<'static, str>),
    Text(Cow<'a, str>),
    Eof,
}

/// Element names of the XML-RPC grammar as static strings, so the hot path does not
/// allocate; anything else is copied (it is about to become an error anyway).
fn intern(name: &str) -> Cow<'static, str> {
    const KNOWN: [&str; 22] = [
        "value",
        "member",
        "name",
        "struct",
        "array",
        "data",
        "string",
        "i4",
        "int",
        "i8",
        "boolean",
        "double",
        "dateTime.iso8601",
        "base64",
        "nil",
        "param",
        "params",
        "methodResponse",
        "methodCall",
        "methodName",
        "fault",
        "ex:nil",
    ];
    match KNOWN.iter().find(|k| **k == name) {
        Some(k) => Cow::Borrowed(*k),
        None => Cow::Owned(name.to_string()),
    }
}

struct Parser<'a> {
    text: &'a str,
    reader: Reader<&'a [u8]>,
    limits: &'a Limits,
    /// Position before the last event read, for error excerpts.
    last_pos: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, limits: &'a Limits) -> Self {
        let mut reader = Reader::from_str(text);
        let cfg = reader.config_mut();
        cfg.expand_empty_elements = true;
        cfg.check_end_names = true;
        cfg.trim_text_start = false;
        cfg.trim_text_end = false;
        Parser {
            text,
            reader,
            limits,
            last_pos: 0,
        }
    }

    fn run<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        f(self)
    }

    fn pos(&self) -> usize {
        self.last_pos
    }

    fn err_at(&self, kind: DecodeErrorKind, position: usize) -> DecodeError {
        DecodeError {
            kind,
            position,
            excerpt: excerpt(self.text, position, EXCERPT_WIDTH),
        }
    }

    fn err(&self, kind: DecodeErrorKind) -> DecodeError {
        self.err_at(kind, self.last_pos)
    }

    fn unexpected(&self, expected: &str, found: &dyn fmt::Display) -> DecodeError {
        self.err(DecodeErrorKind::Unexpected {
            expected: expected.to_string(),
            found: found.to_string(),
        })
    }

    /// Next raw item; comments, PIs and the XML declaration are skipped, entity
    /// references are resolved into text.
    fn item(&mut self) -> Result<Item<'a>, DecodeError> {
        loop {
            self.last_pos = usize::try_from(self.reader.buffer_position()).unwrap_or(usize::MAX);
            let ev = match self.reader.read_event() {
                Ok(ev) => ev,
                Err(e) => {
                    let pos = usize::try_from(self.reader.error_position())
                        .unwrap_or(self.last_pos)
                        .min(self.text.len());
                    let at_end = usize::try_from(self.reader.buffer_position())
                        .is_ok_and(|p| p >= self.text.len());
                    let truncated = at_end
                        && matches!(
                            e,
                            quick_xml::Error::Syntax(_)
                                | quick_xml::Error::IllFormed(
                                    quick_xml::errors::IllFormedError::MissingEndTag(_)
                                )
                        );
                    let kind = if truncated {
                        DecodeErrorKind::Truncated
                    } else {
                        DecodeErrorKind::Xml(e.to_string())
                    };
                    return Err(self.err_at(kind, pos));
                }
            };
            return Ok(match ev {
                Event::Start(s) => Item::Start(intern(s.name().as_ref())),
                Event::End(e) => Item::End(intern(e.name().as_ref())),
                Event::Empty(s) => {
                    // Not produced with expand_empty_elements, kept for safety.
                    Item::Start(intern(s.name().as_ref()))
                }
                Event::Text(t) => Item::Text(t.xml10_content()),
                Event::CData(c) => Item::Text(c.xml10_content()),
                Event::GeneralRef(r) => {
                    if r.is_char_ref() {
                        match r.resolve_char_ref() {
                            Ok(Some(c)) if is_xml_char(c) => Item::Text(Cow::Owned(c.to_string())),
                            _ => {
                                return Err(self.err(DecodeErrorKind::Xml(format!(
                                    "invalid character reference `&{};`",
                                    &*r
                                ))));
                            }
                        }
                    } else if let Some(s) = resolve_predefined_entity(&r) {
                        Item::Text(Cow::Borrowed(s))
                    } else {
                        return Err(self.err(DecodeErrorKind::UnknownEntity(cut(&r))));
                    }
                }
                Event::DocType(d) => {
                    let what = if d.trim_start().to_ascii_lowercase().starts_with("html") {
                        "an HTML page instead of XML-RPC"
                    } else {
                        "document type declarations are not accepted"
                    };
                    return Err(self.err(DecodeErrorKind::NotXmlRpc(what.to_string())));
                }
                Event::Comment(_) | Event::PI(_) | Event::Decl(_) => continue,
                Event::Eof => Item::Eof,
            });
        }
    }

    /// Next element boundary, skipping whitespace-only text.
    fn next_tag(&mut self) -> Result<Tag, DecodeError> {
        loop {
            match self.item()? {
                Item::Start(n) => return Ok(Tag::Start(n)),
                Item::End(n) => return Ok(Tag::End(n)),
                Item::Text(t) if t.chars().all(char::is_whitespace) => continue,
                Item::Text(t) => {
                    return Err(self.err(DecodeErrorKind::Unexpected {
                        expected: "an element".to_string(),
                        found: format!("text {:?}", cut(&t)),
                    }));
                }
                Item::Eof => return Err(self.err(DecodeErrorKind::Truncated)),
            }
        }
    }

    fn expect_start(&mut self, name: &str) -> Result<(), DecodeError> {
        match self.next_tag()? {
            Tag::Start(n) if n == name => Ok(()),
            other => Err(self.unexpected(&format!("<{name}>"), &other)),
        }
    }

    fn expect_end(&mut self, name: &str) -> Result<(), DecodeError> {
        match self.next_tag()? {
            Tag::End(n) if n == name => Ok(()),
            other => Err(self.unexpected(&format!("</{name}>"), &other)),
        }
    }

    /// The root element must be `root`; an HTML page is reported as such.
    fn prolog(&mut self, root: &str) -> Result<(), DecodeError> {
        match self.next_tag() {
            Ok(Tag::Start(n)) if n == root => Ok(()),
            Ok(Tag::Start(n)) if n.eq_ignore_ascii_case("html") => Err(self.err(
                DecodeErrorKind::NotXmlRpc("an HTML page instead of XML-RPC".to_string()),
            )),
            Ok(other) => Err(self.unexpected(&format!("<{root}>"), &other)),
            Err(e) if e.kind == DecodeErrorKind::Truncated && self.text.trim().is_empty() => {
                Err(self.err(DecodeErrorKind::NotXmlRpc("empty body".to_string())))
            }
            Err(e) => Err(e),
        }
    }

    /// After the root element only whitespace, comments and PIs may follow.
    fn epilog(&mut self) -> Result<(), DecodeError> {
        loop {
            match self.item()? {
                Item::Eof => return Ok(()),
                Item::Text(t) if t.chars().all(char::is_whitespace) => continue,
                Item::Start(n) => {
                    return Err(self.unexpected("end of document", &Tag::Start(n)));
                }
                Item::End(n) => return Err(self.unexpected("end of document", &Tag::End(n))),
                Item::Text(t) => {
                    return Err(self.err(DecodeErrorKind::Unexpected {
                        expected: "end of document".to_string(),
                        found: format!("text {:?}", cut(&t)),
                    }));
                }
            }
        }
    }

    /// Text content up to `</name>`; no child elements allowed.
    fn text_until_end(&mut self, name: &str) -> Result<String, DecodeError> {
        let mut out = String::new();
        loop {
            match self.item()? {
                Item::Text(t) => out.push_str(&t),
                Item::End(n) if n == name => return Ok(out),
                Item::End(n) => return Err(self.unexpected(&format!("</{name}>"), &Tag::End(n))),
                Item::Start(n) => {
                    return Err(self.unexpected(&format!("text or </{name}>"), &Tag::Start(n)));
                }
                Item::Eof => return Err(self.err(DecodeErrorKind::Truncated)),
            }
        }
    }

    /// The content of a `<value>` whose start tag was consumed, through `</value>`.
    fn value_body(&mut self, depth: usize) -> Result<Value, DecodeError> {
        let mut text = String::new();
        let ty = loop {
            match self.item()? {
                Item::Text(t) => text.push_str(&t),
                Item::End(n) if n == "value" => return Ok(Value::String(text)),
                Item::Start(n) => {
                    if !text.chars().all(char::is_whitespace) {
                        return Err(self.err(DecodeErrorKind::Unexpected {
                            expected: "a typed value or plain text".to_string(),
                            found: format!("text {:?} mixed with <{n}>", cut(&text)),
                        }));
                    }
                    break n;
                }
                Item::End(n) => return Err(self.unexpected("</value>", &Tag::End(n))),
                Item::Eof => return Err(self.err(DecodeErrorKind::Truncated)),
            }
        };
        let value = self.typed(&ty, depth)?;
        self.expect_end("value")?;
        Ok(value)
    }

    fn bad_value(&self, ty: &str, text: &str, at: usize) -> DecodeError {
        self.err_at(
            DecodeErrorKind::BadValue {
                ty: ty.to_string(),
                text: cut(text),
            },
            at,
        )
    }

    /// A typed value whose start tag `<ty>` was consumed, through `</ty>`.
    fn typed(&mut self, ty: &str, depth: usize) -> Result<Value, DecodeError> {
        let at = self.pos();
        match ty {
            "i4" | "int" | "i8" => {
                let t = self.text_until_end(ty)?;
                t.trim()
                    .parse::<i64>()
                    .map(Value::Int)
                    .map_err(|_| self.bad_value(ty, &t, at))
            }
            "boolean" => {
                let t = self.text_until_end(ty)?;
                match t.trim() {
                    "1" => Ok(Value::Bool(true)),
                    "0" => Ok(Value::Bool(false)),
                    _ => Err(self.bad_value(ty, &t, at)),
                }
            }
            "double" => {
                let t = self.text_until_end(ty)?;
                let s = t.trim();
                // Only plain decimal notation; no "inf"/"nan" words.
                let plausible = !s.is_empty()
                    && s.bytes().all(|b| {
                        b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E')
                    });
                match s.parse::<f64>() {
                    Ok(d) if plausible && d.is_finite() => Ok(Value::Double(d)),
                    _ => Err(self.bad_value(ty, &t, at)),
                }
            }
            "string" => Ok(Value::String(self.text_until_end(ty)?)),
            "dateTime.iso8601" => {
                let t = self.text_until_end(ty)?;
                parse_datetime(&t)
                    .map(Value::DateTime)
                    .ok_or_else(|| self.bad_value(ty, &t, at))
            }
            "base64" => {
                let t = self.text_until_end(ty)?;
                let compact: String = t.chars().filter(|c| !c.is_whitespace()).collect();
                base64::engine::general_purpose::STANDARD
                    .decode(compact.as_bytes())
                    .map(Value::Base64)
                    .map_err(|_| self.bad_value(ty, &t, at))
            }
            "nil" | "ex:nil" => {
                let t = self.text_until_end(ty)?;
                if t.chars().all(char::is_whitespace) {
                    Ok(Value::Nil)
                } else {
                    Err(self.bad_value(ty, &t, at))
                }
            }
            "struct" => {
                let depth = self.deeper(depth)?;
                let mut s = Struct::new();
                loop {
                    match self.next_tag()? {
                        Tag::Start(n) if n == "member" => {
                            self.expect_start("name")?;
                            let name = self.text_until_end("name")?;
                            self.expect_start("value")?;
                            let v = self.value_body(depth)?;
                            self.expect_end("member")?;
                            s.insert(name, v);
                        }
                        Tag::End(n) if n == "struct" => return Ok(Value::Struct(s)),
                        other => return Err(self.unexpected("<member> or </struct>", &other)),
                    }
                }
            }
            "array" => {
                let depth = self.deeper(depth)?;
                self.expect_start("data")?;
                let mut items = Vec::new();
                loop {
                    match self.next_tag()? {
                        Tag::Start(n) if n == "value" => items.push(self.value_body(depth)?),
                        Tag::End(n) if n == "data" => break,
                        other => return Err(self.unexpected("<value> or </data>", &other)),
                    }
                }
                self.expect_end("array")?;
                Ok(Value::Array(items))
            }
            other => Err(self.err_at(
                DecodeErrorKind::Unexpected {
                    expected: "a value type (i4, int, i8, boolean, double, string, \
                               dateTime.iso8601, base64, struct, array, nil)"
                        .to_string(),
                    found: format!("<{other}>"),
                },
                at,
            )),
        }
    }

    fn deeper(&self, depth: usize) -> Result<usize, DecodeError> {
        let d = depth + 1;
        if d > self.limits.max_depth {
            Err(self.err(DecodeErrorKind::TooDeep {
                limit: self.limits.max_depth,
            }))
        } else {
            Ok(d)
        }
    }
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}
