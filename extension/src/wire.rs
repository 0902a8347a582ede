//! Thrift's binary protocol read with bounds: what a peer claims (a string
//! length, a container size) is checked against [`Limits`] before anything
//! is allocated for it, and the bytes of a string are allocated as they
//! arrive, not as announced.
//!
//! The `thrift` crate's `TBinaryInputProtocol` allocates whatever length a
//! peer sends (a 13-byte message claiming a 2 GiB string aborts the process
//! under a memory cap). [`BoundedInput`] speaks the same wire format (strict
//! binary protocol, as osquery writes it) for the server and the manager
//! client alike. A message that breaks a limit is a
//! `ProtocolErrorKind::SizeLimit` error, and the server closes its
//! connection.

use std::io::Read;
use thrift::protocol::{
    TFieldIdentifier, TInputProtocol, TListIdentifier, TMapIdentifier, TMessageIdentifier,
    TMessageType, TSetIdentifier, TStructIdentifier, TType,
};
use thrift::{ProtocolError, ProtocolErrorKind};

/// Bounds on one incoming message (documented in `docs/osquery.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes in one message, header to last field.
    pub message: usize,
    /// Bytes in one string (a query context is one string).
    pub string: usize,
    /// Elements in one list, set or map.
    pub container: usize,
    /// Bytes in a method name.
    pub name: usize,
}

/// The limits the extension applies: generous for real osquery traffic (a
/// context with tens of thousands of `IN` values is a few hundred KiB).
pub const LIMITS: Limits = Limits {
    message: 8 << 20,
    string: 8 << 20,
    container: 1 << 16,
    name: 256,
};

/// Strings are read in pieces of this size, so memory follows the bytes
/// that really arrive.
const CHUNK: usize = 64 * 1024;

/// A strict binary-protocol reader over `R` that enforces [`Limits`].
#[derive(Debug)]
pub struct BoundedInput<R> {
    r: R,
    limits: Limits,
    /// Bytes the current message may still take.
    left: usize,
}

fn size_limit(message: String) -> thrift::Error {
    thrift::Error::Protocol(ProtocolError::new(ProtocolErrorKind::SizeLimit, message))
}

fn invalid(message: String) -> thrift::Error {
    thrift::Error::Protocol(ProtocolError::new(ProtocolErrorKind::InvalidData, message))
}

/// Whether `e` is a limit of this module (the connection is closed and
/// logged, not answered).
pub fn is_limit(e: &thrift::Error) -> bool {
    matches!(e, thrift::Error::Protocol(p) if p.kind == ProtocolErrorKind::SizeLimit)
}

/// What went wrong, with the protocol error's message (the `thrift`
/// crate's `Display` gives only its kind).
pub fn describe(e: &thrift::Error) -> String {
    match e {
        thrift::Error::Protocol(p) if !p.message.is_empty() => format!("{p}: {}", p.message),
        other => other.to_string(),
    }
}

fn ttype(b: u8) -> thrift::Result<TType> {
    Ok(match b {
        0x00 => TType::Stop,
        0x01 => TType::Void,
        0x02 => TType::Bool,
        0x03 => TType::I08,
        0x04 => TType::Double,
        0x06 => TType::I16,
        0x08 => TType::I32,
        0x0A => TType::I64,
        0x0B => TType::String,
        0x0C => TType::Struct,
        0x0D => TType::Map,
        0x0E => TType::Set,
        0x0F => TType::List,
        0x10 => TType::Utf8,
        0x11 => TType::Utf16,
        other => return Err(invalid(format!("unknown Thrift type {other:#04x}"))),
    })
}

impl<R: Read> BoundedInput<R> {
    pub fn new(r: R, limits: Limits) -> BoundedInput<R> {
        BoundedInput {
            r,
            limits,
            left: limits.message,
        }
    }

    /// Bytes of the current message read or being read: after a short
    /// read, how long the input must be for reading to get further.
    pub fn charged(&self) -> usize {
        self.limits.message - self.left
    }

    /// Takes `n` bytes from the message's budget.
    fn charge(&mut self, n: usize) -> thrift::Result<()> {
        match self.left.checked_sub(n) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(size_limit(format!(
                "message longer than the limit of {} bytes",
                self.limits.message
            ))),
        }
    }

    fn fixed<const N: usize>(&mut self) -> thrift::Result<[u8; N]> {
        self.charge(N)?;
        let mut b = [0u8; N];
        self.r.read_exact(&mut b)?;
        Ok(b)
    }

    /// A length or size on the wire: never negative, at most `max`.
    fn length(&mut self, what: &str, max: usize) -> thrift::Result<usize> {
        let n = i32::from_be_bytes(self.fixed()?);
        let n = usize::try_from(n).map_err(|_| invalid(format!("negative {what} {n}")))?;
        if n > max {
            return Err(size_limit(format!("{what} {n} exceeds the limit of {max}")));
        }
        Ok(n)
    }

    fn bytes_of(&mut self, len: usize) -> thrift::Result<Vec<u8>> {
        self.charge(len)?;
        let mut buf = Vec::with_capacity(len.min(CHUNK));
        while buf.len() < len {
            let start = buf.len();
            buf.resize(start + (len - start).min(CHUNK), 0);
            self.r.read_exact(&mut buf[start..])?;
        }
        Ok(buf)
    }

    /// A container of `size` elements must fit in the rest of the message
    /// (every element takes at least one byte).
    fn elements(&mut self, what: &str) -> thrift::Result<i32> {
        let n = self.length(what, self.limits.container)?;
        if n > self.left {
            return Err(size_limit(format!(
                "{what} {n} cannot fit in the rest of the message ({} bytes)",
                self.left
            )));
        }
        // n <= limits.container, which fits an i32 as it came from one.
        Ok(i32::try_from(n).unwrap_or(i32::MAX))
    }
}

impl<R: Read> TInputProtocol for BoundedInput<R> {
    fn read_message_begin(&mut self) -> thrift::Result<TMessageIdentifier> {
        self.left = self.limits.message;
        let head: [u8; 4] = self.fixed()?;
        if head[0..2] != [0x80, 0x01] {
            return Err(thrift::Error::Protocol(ProtocolError::new(
                ProtocolErrorKind::BadVersion,
                format!(
                    "not a strict Thrift binary message (starts {:02x} {:02x})",
                    head[0], head[1]
                ),
            )));
        }
        let kind = TMessageType::try_from(head[3])?;
        let len = self.length("method name length", self.limits.name)?;
        let name = String::from_utf8(self.bytes_of(len)?)?;
        let seq = self.read_i32()?;
        Ok(TMessageIdentifier::new(name, kind, seq))
    }

    fn read_message_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }

    fn read_struct_begin(&mut self) -> thrift::Result<Option<TStructIdentifier>> {
        Ok(None)
    }

    fn read_struct_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }

    fn read_field_begin(&mut self) -> thrift::Result<TFieldIdentifier> {
        let ty = ttype(self.read_byte()?)?;
        let id = match ty {
            TType::Stop => 0,
            _ => self.read_i16()?,
        };
        Ok(TFieldIdentifier::new::<Option<String>, String, i16>(
            None, ty, id,
        ))
    }

    fn read_field_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }

    fn read_bool(&mut self) -> thrift::Result<bool> {
        Ok(self.read_byte()? != 0)
    }

    fn read_bytes(&mut self) -> thrift::Result<Vec<u8>> {
        let len = self.length("string length", self.limits.string)?;
        self.bytes_of(len)
    }

    fn read_i8(&mut self) -> thrift::Result<i8> {
        Ok(i8::from_be_bytes(self.fixed()?))
    }

    fn read_i16(&mut self) -> thrift::Result<i16> {
        Ok(i16::from_be_bytes(self.fixed()?))
    }

    fn read_i32(&mut self) -> thrift::Result<i32> {
        Ok(i32::from_be_bytes(self.fixed()?))
    }

    fn read_i64(&mut self) -> thrift::Result<i64> {
        Ok(i64::from_be_bytes(self.fixed()?))
    }

    fn read_double(&mut self) -> thrift::Result<f64> {
        Ok(f64::from_be_bytes(self.fixed()?))
    }

    fn read_string(&mut self) -> thrift::Result<String> {
        Ok(String::from_utf8(self.read_bytes()?)?)
    }

    fn read_list_begin(&mut self) -> thrift::Result<TListIdentifier> {
        let ty = ttype(self.read_byte()?)?;
        let size = self.elements("list size")?;
        Ok(TListIdentifier::new(ty, size))
    }

    fn read_list_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }

    fn read_set_begin(&mut self) -> thrift::Result<TSetIdentifier> {
        let ty = ttype(self.read_byte()?)?;
        let size = self.elements("set size")?;
        Ok(TSetIdentifier::new(ty, size))
    }

    fn read_set_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }

    fn read_map_begin(&mut self) -> thrift::Result<TMapIdentifier> {
        let k = ttype(self.read_byte()?)?;
        let v = ttype(self.read_byte()?)?;
        let size = self.elements("map size")?;
        Ok(TMapIdentifier::new(k, v, size))
    }

    fn read_map_end(&mut self) -> thrift::Result<()> {
        Ok(())
    }

    fn read_byte(&mut self) -> thrift::Result<u8> {
        Ok(self.fixed::<1>()?[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osquery_thrift::{ExtensionResponse, ExtensionStatus};
    use std::collections::BTreeMap;
    use thrift::protocol::{TBinaryOutputProtocol, TOutputProtocol, TSerializable};

    const SMALL: Limits = Limits {
        message: 200,
        string: 50,
        container: 4,
        name: 8,
    };

    fn header(name: &str) -> Vec<u8> {
        let mut v = vec![0x80, 0x01, 0x00, 0x01];
        v.extend((name.len() as i32).to_be_bytes());
        v.extend(name.as_bytes());
        v.extend(7i32.to_be_bytes());
        v
    }

    fn err_of<T: std::fmt::Debug>(r: thrift::Result<T>) -> thrift::Error {
        r.expect_err("a limit")
    }

    #[test]
    fn the_issue_frame_claiming_2_gib_is_refused_before_allocating() {
        // 80 01 00 01 | len 4 "call" | seq | 0b 00 01 | 7f ff ff ff
        let mut frame = header("call");
        frame.extend([0x0b, 0x00, 0x01, 0x7f, 0xff, 0xff, 0xff]);
        let mut p = BoundedInput::new(&frame[..], LIMITS);
        let m = p.read_message_begin().expect("header");
        assert_eq!(m.name, "call");
        let f = p.read_field_begin().expect("field");
        assert_eq!(f.field_type, TType::String);
        let e = err_of(p.read_string());
        assert!(is_limit(&e), "{e}");
        assert!(describe(&e).contains("2147483647"), "{e}");
    }

    #[test]
    fn strings_containers_names_and_messages_are_bounded() {
        let mut s = header("call");
        s.extend(51i32.to_be_bytes());
        let mut p = BoundedInput::new(&s[..], SMALL);
        p.read_message_begin().expect("header");
        assert!(is_limit(&err_of(p.read_string())));

        let mut m = header("call");
        m.extend([0x0b, 0x0b]);
        m.extend(5i32.to_be_bytes());
        let mut p = BoundedInput::new(&m[..], SMALL);
        p.read_message_begin().expect("header");
        assert!(is_limit(&err_of(p.read_map_begin())));

        let long = header("toolongname");
        let mut p = BoundedInput::new(&long[..], SMALL);
        assert!(is_limit(&err_of(p.read_message_begin())));

        // Strings each within their limit, but more of them than a message.
        let mut many = header("call");
        for _ in 0..5 {
            many.extend(40i32.to_be_bytes());
            many.extend([b'x'; 40]);
        }
        let mut p = BoundedInput::new(&many[..], SMALL);
        p.read_message_begin().expect("header");
        let e = (0..5).map(|_| p.read_string()).find_map(Result::err);
        assert!(e.as_ref().is_some_and(is_limit), "{e:?}");
    }

    #[test]
    fn negative_lengths_are_invalid_data_not_panics() {
        let mut l = header("call");
        l.extend([0x0f]);
        l.extend((-1i32).to_be_bytes());
        let mut p = BoundedInput::new(&l[..], LIMITS);
        p.read_message_begin().expect("header");
        let e = err_of(p.read_list_begin());
        assert!(!is_limit(&e) && describe(&e).contains("negative"), "{e}");
    }

    #[test]
    fn the_budget_restarts_with_each_message() {
        let mut two = header("ping");
        two.push(0); // stop
        two.extend(header("ping"));
        two.push(0);
        let limits = Limits {
            message: 20,
            ..SMALL
        };
        let mut p = BoundedInput::new(&two[..], limits);
        for _ in 0..2 {
            p.read_message_begin().expect("header");
            assert_eq!(p.read_field_begin().expect("stop").field_type, TType::Stop);
        }
    }

    #[test]
    fn reads_what_the_thrift_writer_writes() {
        let rows = vec![BTreeMap::from([("name".to_string(), "web".to_string())])];
        let resp = ExtensionResponse::new(ExtensionStatus::new(0, "OK".to_string(), 3), rows);
        let mut wire = Vec::new();
        {
            let mut o = TBinaryOutputProtocol::new(&mut wire, true);
            o.write_message_begin(&TMessageIdentifier::new("call", TMessageType::Reply, 9))
                .expect("begin");
            resp.write_to_out_protocol(&mut o).expect("write");
        }
        let mut p = BoundedInput::new(&wire[..], LIMITS);
        let m = p.read_message_begin().expect("header");
        assert_eq!((m.name.as_str(), m.sequence_number), ("call", 9));
        assert_eq!(
            ExtensionResponse::read_from_in_protocol(&mut p).expect("read"),
            resp
        );
    }
}
