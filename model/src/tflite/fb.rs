//! A bounds-checked FlatBuffers reader: tables through their vtables,
//! scalars, vectors, strings and sub-tables, each read checked against the
//! buffer (an out-of-range offset is an error, never a panic), and offsets
//! followed only forward or to vtables inside the buffer.
//!
//! The wire format: a buffer starts with the `u32` offset of its root
//! table; a table starts with the `i32` distance back to its vtable; a
//! vtable is `u16` fields: its own size, the table's size, then one `u16`
//! per field id giving the field's position in the table (0: absent, the
//! schema's default). Reference fields hold a `u32` offset relative to
//! their own position; vectors and strings start with a `u32` length.

/// A malformed buffer: what was read where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FbError(pub String);

/// Result of a read.
pub type FbResult<T> = std::result::Result<T, FbError>;

fn oob(what: &str, pos: usize) -> FbError {
    FbError(format!("{what} at byte {pos} is outside the file"))
}

fn bytes<const N: usize>(buf: &[u8], pos: usize, what: &str) -> FbResult<[u8; N]> {
    buf.get(pos..pos.checked_add(N).ok_or_else(|| oob(what, pos))?)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| oob(what, pos))
}

fn u32_at(buf: &[u8], pos: usize) -> FbResult<u32> {
    Ok(u32::from_le_bytes(bytes(buf, pos, "an offset")?))
}

/// One table of a buffer.
#[derive(Clone, Copy, Debug)]
pub struct Table<'a> {
    buf: &'a [u8],
    pos: usize,
    vtable: usize,
    vt_len: usize,
}

impl<'a> Table<'a> {
    /// The root table of a buffer, checking its 4-byte file identifier
    /// (bytes 4..8) when given.
    pub fn root(buf: &'a [u8], ident: Option<&[u8; 4]>) -> FbResult<Self> {
        if let Some(id) = ident {
            if buf.get(4..8) != Some(&id[..]) {
                return Err(FbError(format!(
                    "missing file identifier {:?}",
                    String::from_utf8_lossy(id)
                )));
            }
        }
        Self::at(buf, Self::follow(buf, 0)?)
    }

    fn follow(buf: &[u8], pos: usize) -> FbResult<usize> {
        pos.checked_add(u32_at(buf, pos)? as usize)
            .filter(|&p| p < buf.len())
            .ok_or_else(|| oob("a referenced object", pos))
    }

    fn at(buf: &'a [u8], pos: usize) -> FbResult<Self> {
        let back = i32::from_le_bytes(bytes(buf, pos, "a table")?) as i64;
        let vtable = usize::try_from(pos as i64 - back).map_err(|_| oob("a vtable", pos))?;
        let vt_len = u16::from_le_bytes(bytes(buf, vtable, "a vtable")?) as usize;
        if vt_len < 4 || !vt_len.is_multiple_of(2) || vtable + vt_len > buf.len() {
            return Err(FbError(format!("malformed vtable at byte {vtable}")));
        }
        Ok(Table {
            buf,
            pos,
            vtable,
            vt_len,
        })
    }

    /// The position of field `id`, if present.
    fn field(&self, id: usize) -> FbResult<Option<usize>> {
        let slot = 4 + 2 * id;
        if slot + 2 > self.vt_len {
            return Ok(None);
        }
        let off = u16::from_le_bytes(bytes(self.buf, self.vtable + slot, "a vtable entry")?);
        Ok((off != 0).then_some(self.pos + off as usize))
    }

    /// A scalar field of `N` bytes, or `None` when absent (the default).
    pub fn scalar<const N: usize>(&self, id: usize) -> FbResult<Option<[u8; N]>> {
        match self.field(id)? {
            Some(p) => bytes(self.buf, p, "a scalar field").map(Some),
            None => Ok(None),
        }
    }

    /// A `u8`/`i8`/`bool` field (default `default`).
    pub fn u8(&self, id: usize, default: u8) -> FbResult<u8> {
        Ok(self.scalar::<1>(id)?.map_or(default, |b| b[0]))
    }

    /// An `i32` field (default `default`).
    pub fn i32(&self, id: usize, default: i32) -> FbResult<i32> {
        Ok(self.scalar(id)?.map_or(default, i32::from_le_bytes))
    }

    /// A `u32` field (default `default`).
    pub fn u32(&self, id: usize, default: u32) -> FbResult<u32> {
        Ok(self.scalar(id)?.map_or(default, u32::from_le_bytes))
    }

    /// The start and length of a vector (or string) field.
    fn vector(&self, id: usize, elem: usize) -> FbResult<Option<(usize, usize)>> {
        let Some(p) = self.field(id)? else {
            return Ok(None);
        };
        let start = Self::follow(self.buf, p)?;
        let n = u32_at(self.buf, start)? as usize;
        let body = start + 4;
        match n.checked_mul(elem).and_then(|b| body.checked_add(b)) {
            Some(end) if end <= self.buf.len() => Ok(Some((body, n))),
            _ => Err(oob("a vector", start)),
        }
    }

    /// A byte-vector field (empty when absent).
    pub fn bytes_field(&self, id: usize) -> FbResult<&'a [u8]> {
        Ok(match self.vector(id, 1)? {
            Some((s, n)) => &self.buf[s..s + n],
            None => &[],
        })
    }

    /// An `[int]` field (empty when absent).
    pub fn i32s(&self, id: usize) -> FbResult<Vec<i32>> {
        let Some((s, n)) = self.vector(id, 4)? else {
            return Ok(Vec::new());
        };
        (0..n)
            .map(|i| Ok(i32::from_le_bytes(bytes(self.buf, s + 4 * i, "an int")?)))
            .collect()
    }

    /// A string field (empty when absent; lossy UTF-8).
    pub fn string(&self, id: usize) -> FbResult<String> {
        Ok(String::from_utf8_lossy(self.bytes_field(id)?).into_owned())
    }

    /// A sub-table field.
    pub fn table(&self, id: usize) -> FbResult<Option<Table<'a>>> {
        match self.field(id)? {
            Some(p) => Self::at(self.buf, Self::follow(self.buf, p)?).map(Some),
            None => Ok(None),
        }
    }

    /// A `[Table]` field (empty when absent).
    pub fn tables(&self, id: usize) -> FbResult<Vec<Table<'a>>> {
        let Some((s, n)) = self.vector(id, 4)? else {
            return Ok(Vec::new());
        };
        (0..n)
            .map(|i| Self::at(self.buf, Self::follow(self.buf, s + 4 * i)?))
            .collect()
    }
}
