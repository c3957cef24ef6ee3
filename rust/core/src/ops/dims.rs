//! `Dims`: a full shape held inline (no allocation), for the batch loop.

/// The largest rank an op handles.
pub const MAX_RANK: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    rank: usize,
    d: [usize; MAX_RANK],
}

impl Dims {
    /// Panics above MAX_RANK: ops check ranks when they are built.
    pub fn new(shape: &[usize]) -> Self {
        assert!(shape.len() <= MAX_RANK, "rank {} > {MAX_RANK}", shape.len());
        let mut d = [1; MAX_RANK];
        d[..shape.len()].copy_from_slice(shape);
        Dims {
            rank: shape.len(),
            d,
        }
    }

    /// `rows` followed by `shape`.
    pub fn batched(rows: usize, shape: &[usize]) -> Self {
        assert!(
            shape.len() < MAX_RANK,
            "rank {} > {MAX_RANK}",
            shape.len() + 1
        );
        let mut d = [1; MAX_RANK];
        d[0] = rows;
        d[1..=shape.len()].copy_from_slice(shape);
        Dims {
            rank: shape.len() + 1,
            d,
        }
    }

    pub fn as_slice(&self) -> &[usize] {
        &self.d[..self.rank]
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn size(&self) -> usize {
        self.as_slice().iter().product()
    }

    /// Row-major strides in elements.
    pub fn strides(&self) -> [usize; MAX_RANK] {
        let mut s = [0; MAX_RANK];
        let mut acc = 1;
        for i in (0..self.rank).rev() {
            s[i] = acc;
            acc *= self.d[i];
        }
        s
    }
}

impl std::ops::Index<usize> for Dims {
    type Output = usize;
    fn index(&self, i: usize) -> &usize {
        &self.as_slice()[i]
    }
}
