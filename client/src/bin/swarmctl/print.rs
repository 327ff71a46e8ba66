//! Printing what commands get back: a partial answer (what the live nodes said, then a failure
//! naming the missing nodes), one name per line, and record streams, whose records are written
//! as they come and whose error ends the output after what came before it.

use crate::outcome::check_complete;
use crate::CmdResult;
use client::{ClientError, Partial};
use std::io::Write;

/// Prints what the nodes that answered said (with `print`), then fails naming the nodes that
/// could not answer, if any.
pub fn print_partial<T, W: Write>(
    partial: Partial<T>,
    out: &mut W,
    print: impl FnOnce(&T, &mut W) -> std::io::Result<()>,
) -> CmdResult {
    print(&partial.value, out)?;
    out.flush()?;
    check_complete(&partial.missing)
}

/// One name per line (the `channels` verbs). Takes the `Vec` itself, the value of a
/// `Partial<Vec<String>>`, to be passed to [`print_partial`] as it is.
#[allow(clippy::ptr_arg)]
pub fn names(names: &Vec<String>, out: &mut impl Write) -> std::io::Result<()> {
    names.iter().try_for_each(|name| writeln!(out, "{name}"))
}

/// Writes every record with `line`, buffered; on an error, writes out what came before it and
/// returns the error. The caller then checks what the stream missed.
pub fn records<W: Write>(
    records: impl Iterator<Item = Result<(u64, Vec<u8>), ClientError>>,
    out: &mut W,
    mut line: impl FnMut(&mut std::io::BufWriter<&mut W>, u64, &[u8]) -> std::io::Result<()>,
) -> CmdResult {
    let mut out = std::io::BufWriter::new(out);
    for record in records {
        let (key, value) = match record {
            Ok(record) => record,
            Err(error) => {
                out.flush()?;
                return Err(error.into());
            }
        };
        line(&mut out, key, &value)?;
    }
    out.flush()?;
    Ok(())
}
