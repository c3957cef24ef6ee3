//! Elementwise ops: unary maps (exp, relu, gelu, ...), binary ops with NumPy
//! broadcasting (add, maximum, power, comparisons, ...) and `where`.
//!
//! Broadcast operands are read through a strided walk (stride 0 on broadcast
//! axes); equal shapes, a scalar operand and a trailing block such as
//! (B, n) + (n,) all become long contiguous runs of it. The gradient of a
//! broadcast input sums the result's gradient over the axes it was repeated
//! along, in f64 and in a fixed order.

use super::strided::{broadcast_strides, for_blocks, store, zeroed, Walk};
use super::{attr_bool, attr_f32, broadcast, expect_inputs, Op, Operand};
use crate::error::Result;
use serde_json::Value;

pub(super) fn build(name: &str, attrs: &Value, inputs: &[Operand]) -> Option<Result<Box<dyn Op>>> {
    if let Some(kind) = U::from_name(name) {
        return Some(
            UnaryOp::build(name, kind, attrs, inputs).map(|op| Box::new(op) as Box<dyn Op>),
        );
    }
    if let Some(kind) = B::from_name(name) {
        return Some(BinaryOp::build(name, kind, inputs).map(|op| Box::new(op) as Box<dyn Op>));
    }
    if name == "where" {
        return Some(WhereOp::build(inputs).map(|op| Box::new(op) as Box<dyn Op>));
    }
    None
}

/// Runs `$body` with `$k` bound to the constant variant `$kind` holds, so each
/// kernel is compiled per op with its formula inlined (no match per element).
macro_rules! monomorphic {
    ($kind:expr, $t:ident [$($v:ident),* $(,)?], |$k:ident| $body:expr) => {
        match $kind {
            $($t::$v => {
                // A const, not a variable: closures in $body then see the op as a
                // constant, and its formula is inlined without a match per element.
                #[allow(non_upper_case_globals)]
                const $k: $t = $t::$v;
                $body
            })*
        }
    };
}

macro_rules! with_unary {
    ($kind:expr, |$k:ident| $body:expr) => {
        monomorphic!($kind, U [Negative, Abs, Square, Sqrt, Exp, Log, Log1p, Sign, Relu,
            Relu6, Sigmoid, Tanh, Softplus, Silu, Gelu, GeluExact, Elu, Selu, LeakyRelu, Clip,
            StopGradient, LogicalNot, Floor, Ceil, Round, Trunc], |$k| $body)
    };
}

macro_rules! with_binary {
    ($kind:expr, |$k:ident| $body:expr) => {
        monomorphic!($kind, B [Add, Subtract, Multiply, Divide, Maximum, Minimum, Power, Equal,
            NotEqual, Greater, GreaterEqual, Less, LessEqual, LogicalAnd, LogicalOr], |$k| $body)
    };
}

const SELU_ALPHA: f32 = 1.673_263_2;
const SELU_SCALE: f32 = 1.050_701;
const GELU_C: f32 = 0.797_884_6; // sqrt(2 / pi)
const GELU_K: f32 = 0.044_715;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum U {
    Negative,
    Abs,
    Square,
    Sqrt,
    Exp,
    Log,
    Log1p,
    Sign,
    Relu,
    Relu6,
    Sigmoid,
    Tanh,
    Softplus,
    Silu,
    Gelu,
    GeluExact,
    Elu,
    Selu,
    LeakyRelu,
    Clip,
    StopGradient,
    LogicalNot,
    Floor,
    Ceil,
    /// To the nearest integer, halves to even (NumPy's and Keras's rounding).
    Round,
    /// Towards zero (a cast to an integer type).
    Trunc,
}

/// The numbers some unary ops take: elu's alpha, leaky_relu's slope, clip's bounds.
#[derive(Clone, Copy, Debug, Default)]
struct Params {
    alpha: f32,
    lo: f32,
    hi: f32,
}

impl U {
    fn from_name(name: &str) -> Option<U> {
        Some(match name {
            "negative" => U::Negative,
            "abs" => U::Abs,
            "square" => U::Square,
            "sqrt" => U::Sqrt,
            "exp" => U::Exp,
            "log" => U::Log,
            "log1p" => U::Log1p,
            "sign" => U::Sign,
            "relu" => U::Relu,
            "relu6" => U::Relu6,
            "sigmoid" => U::Sigmoid,
            "tanh" => U::Tanh,
            "softplus" => U::Softplus,
            "silu" => U::Silu,
            "gelu" => U::Gelu,
            "elu" => U::Elu,
            "selu" => U::Selu,
            "leaky_relu" => U::LeakyRelu,
            "clip" => U::Clip,
            "stop_gradient" => U::StopGradient,
            "logical_not" => U::LogicalNot,
            "floor" => U::Floor,
            "ceil" => U::Ceil,
            "round" => U::Round,
            "trunc" => U::Trunc,
            _ => return None,
        })
    }

    /// Ops whose gradient is zero everywhere.
    fn constant_gradient(self) -> bool {
        matches!(
            self,
            U::Sign | U::StopGradient | U::LogicalNot | U::Floor | U::Ceil | U::Round | U::Trunc
        )
    }

    #[inline(always)]
    fn f(self, p: Params, x: f32) -> f32 {
        match self {
            U::Negative => -x,
            U::Abs => x.abs(),
            U::Square => x * x,
            U::Sqrt => x.sqrt(),
            U::Exp => x.exp(),
            U::Log => x.ln(),
            U::Log1p => x.ln_1p(),
            U::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    x // 0, -0 and NaN stay
                }
            }
            // NaN passes through, as in NumPy's maximum(x, 0).
            U::Relu => {
                if x < 0.0 {
                    0.0
                } else {
                    x
                }
            }
            U::Relu6 => x.clamp(0.0, 6.0),
            U::Sigmoid => sigmoid(x),
            U::Tanh => x.tanh(),
            U::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            U::Silu => x * sigmoid(x),
            U::Gelu => {
                let u = GELU_C * (x + GELU_K * x * x * x);
                0.5 * x * (1.0 + u.tanh())
            }
            U::GeluExact => (x as f64 * normal_cdf(x as f64)) as f32,
            U::Elu => {
                if x > 0.0 {
                    x
                } else {
                    p.alpha * x.exp_m1()
                }
            }
            U::Selu => {
                if x > 0.0 {
                    SELU_SCALE * x
                } else {
                    SELU_SCALE * SELU_ALPHA * x.exp_m1()
                }
            }
            U::LeakyRelu => {
                if x > 0.0 {
                    x
                } else {
                    p.alpha * x
                }
            }
            // np.clip: minimum(maximum(x, lo), hi), NaN passing through.
            U::Clip => {
                let m = if x < p.lo { p.lo } else { x };
                if m > p.hi {
                    p.hi
                } else {
                    m
                }
            }
            U::StopGradient => x,
            U::LogicalNot => f32::from(x == 0.0),
            U::Floor => x.floor(),
            U::Ceil => x.ceil(),
            U::Round => x.round_ties_even(),
            U::Trunc => x.trunc(),
        }
    }

    /// dy/dx at input `x` with result `y`.
    #[inline(always)]
    fn df(self, p: Params, x: f32, y: f32) -> f32 {
        let step = |b: bool| f32::from(b);
        match self {
            U::Negative => -1.0,
            U::Abs => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            U::Square => 2.0 * x,
            U::Sqrt => 0.5 / y,
            U::Exp => y,
            U::Log => 1.0 / x,
            U::Log1p => 1.0 / (1.0 + x),
            U::Relu => step(x > 0.0),
            U::Relu6 => step(x > 0.0 && x < 6.0),
            U::Sigmoid => y * (1.0 - y),
            U::Tanh => 1.0 - y * y,
            U::Softplus => sigmoid(x),
            U::Silu => {
                let s = sigmoid(x);
                s * (1.0 + x * (1.0 - s))
            }
            U::Gelu => {
                let u = GELU_C * (x + GELU_K * x * x * x);
                let t = u.tanh();
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_K * x * x)
            }
            U::GeluExact => {
                let xd = x as f64;
                let pdf = (-0.5 * xd * xd).exp() / (2.0 * std::f64::consts::PI).sqrt();
                (normal_cdf(xd) + xd * pdf) as f32
            }
            U::Elu => {
                if x > 0.0 {
                    1.0
                } else {
                    p.alpha * x.exp()
                }
            }
            U::Selu => {
                if x > 0.0 {
                    SELU_SCALE
                } else {
                    SELU_SCALE * SELU_ALPHA * x.exp()
                }
            }
            U::LeakyRelu => {
                if x > 0.0 {
                    1.0
                } else {
                    p.alpha
                }
            }
            U::Clip => step(x >= p.lo && x <= p.hi),
            U::Sign
            | U::StopGradient
            | U::LogicalNot
            | U::Floor
            | U::Ceil
            | U::Round
            | U::Trunc => 0.0,
        }
    }
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Φ(x), the standard normal CDF, as 0.5·erfc(-x/√2) (accurate in both tails).
fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// erf(x) by its Taylor series: converges fast and loses little for |x| < 2.
fn erf_series(x: f64) -> f64 {
    let x2 = x * x;
    let (mut term, mut sum) = (x, x);
    for n in 1..80 {
        term *= -x2 / n as f64;
        let t = term / (2 * n + 1) as f64;
        sum += t;
        if t.abs() < 1e-17 * sum.abs() {
            break;
        }
    }
    sum * std::f64::consts::FRAC_2_SQRT_PI
}

/// erfc(x) for x >= 2 by its continued fraction
/// erfc(x) = e^(-x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))),
/// which at 60 terms is exact to f64 rounding there.
fn erfc_tail(x: f64) -> f64 {
    let mut f = x;
    for n in (1..=60).rev() {
        f = x + (n as f64 * 0.5) / f;
    }
    (-x * x).exp() / (std::f64::consts::PI.sqrt() * f)
}

/// The complementary error function, accurate to about 1e-12 relative.
pub(crate) fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        x
    } else if x.abs() < 2.0 {
        1.0 - erf_series(x)
    } else if x > 0.0 {
        erfc_tail(x)
    } else {
        2.0 - erfc_tail(-x)
    }
}

/// A unary map: the same shape out.
struct UnaryOp {
    kind: U,
    p: Params,
    out: Operand,
}

impl UnaryOp {
    fn build(name: &str, kind: U, attrs: &Value, inputs: &[Operand]) -> Result<Self> {
        expect_inputs(name, inputs, 1)?;
        let mut p = Params::default();
        let kind = match kind {
            U::Gelu if !attr_bool(attrs, "approximate", true)? => U::GeluExact,
            U::Elu => {
                p.alpha = attr_f32(attrs, "alpha", 1.0)?;
                kind
            }
            U::LeakyRelu => {
                p.alpha = attr_f32(attrs, "negative_slope", 0.2)?;
                kind
            }
            U::Clip => {
                p.lo = attr_f32(attrs, "min", f32::NEG_INFINITY)?;
                p.hi = attr_f32(attrs, "max", f32::INFINITY)?;
                kind
            }
            _ => kind,
        };
        Ok(UnaryOp {
            kind,
            p,
            out: inputs[0].clone(),
        })
    }
}

impl Op for UnaryOp {
    fn output(&self) -> &Operand {
        &self.out
    }

    fn forward(&mut self, xs: &[&[f32]], y: &mut [f32], _rows: usize) {
        let (x, p) = (xs[0], self.p);
        with_unary!(self.kind, |k| for_blocks(y, |start, block| {
            for (v, &xv) in block.iter_mut().zip(&x[start..]) {
                *v = k.f(p, xv);
            }
        }))
    }

    fn backward(
        &mut self,
        xs: &[&[f32]],
        y: &[f32],
        dy: &[f32],
        dxs: &mut [Option<&mut [f32]>],
        _rows: usize,
    ) {
        let Some(dx) = dxs[0].as_deref_mut() else {
            return;
        };
        if self.kind.constant_gradient() {
            dx.fill(0.0);
            return;
        }
        let (x, p) = (xs[0], self.p);
        with_unary!(self.kind, |k| for_blocks(dx, |start, block| {
            let n = block.len();
            let (xb, yb, db) = (
                &x[start..start + n],
                &y[start..start + n],
                &dy[start..start + n],
            );
            for (i, v) in block.iter_mut().enumerate() {
                *v = db[i] * k.df(p, xb[i], yb[i]);
            }
        }))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum B {
    Add,
    Subtract,
    Multiply,
    Divide,
    Maximum,
    Minimum,
    Power,
    Equal,
    NotEqual,
    Greater,
    GreaterEqual,
    Less,
    LessEqual,
    LogicalAnd,
    LogicalOr,
}

impl B {
    fn from_name(name: &str) -> Option<B> {
        Some(match name {
            "add" => B::Add,
            "subtract" => B::Subtract,
            "multiply" => B::Multiply,
            "divide" => B::Divide,
            "maximum" => B::Maximum,
            "minimum" => B::Minimum,
            "power" => B::Power,
            "equal" => B::Equal,
            "not_equal" => B::NotEqual,
            "greater" => B::Greater,
            "greater_equal" => B::GreaterEqual,
            "less" => B::Less,
            "less_equal" => B::LessEqual,
            "logical_and" => B::LogicalAnd,
            "logical_or" => B::LogicalOr,
            _ => return None,
        })
    }

    fn differentiable(self) -> bool {
        matches!(
            self,
            B::Add | B::Subtract | B::Multiply | B::Divide | B::Maximum | B::Minimum | B::Power
        )
    }

    #[inline(always)]
    fn f(self, a: f32, b: f32) -> f32 {
        let flag = |c: bool| f32::from(c);
        match self {
            B::Add => a + b,
            B::Subtract => a - b,
            B::Multiply => a * b,
            B::Divide => a / b,
            // NaN wins; a tie keeps the first operand.
            B::Maximum => {
                if a >= b || a.is_nan() {
                    a
                } else {
                    b
                }
            }
            B::Minimum => {
                if a <= b || a.is_nan() {
                    a
                } else {
                    b
                }
            }
            B::Power => a.powf(b),
            B::Equal => flag(a == b),
            B::NotEqual => flag(a != b),
            B::Greater => flag(a > b),
            B::GreaterEqual => flag(a >= b),
            B::Less => flag(a < b),
            B::LessEqual => flag(a <= b),
            B::LogicalAnd => flag(a != 0.0 && b != 0.0),
            B::LogicalOr => flag(a != 0.0 || b != 0.0),
        }
    }

    /// ∂y/∂a at (a, b) with result y.
    #[inline(always)]
    fn da(self, a: f32, b: f32, _y: f32) -> f32 {
        match self {
            B::Add | B::Subtract => 1.0,
            B::Multiply => b,
            B::Divide => 1.0 / b,
            B::Maximum => f32::from(a >= b),
            B::Minimum => f32::from(a <= b),
            B::Power => {
                if b == 0.0 {
                    0.0
                } else {
                    b * a.powf(b - 1.0)
                }
            }
            _ => 0.0,
        }
    }

    /// ∂y/∂b at (a, b) with result y.
    #[inline(always)]
    fn db(self, a: f32, b: f32, y: f32) -> f32 {
        match self {
            B::Add => 1.0,
            B::Subtract => -1.0,
            B::Multiply => a,
            B::Divide => -(a / b) / b,
            B::Maximum | B::Minimum => 1.0 - self.da(a, b, y),
            B::Power => {
                let g = a.ln() * y;
                if g.is_finite() {
                    g
                } else {
                    0.0
                }
            }
            _ => 0.0,
        }
    }
}

/// The walk over the result's full shape reading every input with broadcast strides.
fn broadcast_walk<const N: usize>(ins: &[Operand; N], out: &Operand, rows: usize) -> Walk<N> {
    let od = out.dims(rows);
    let rank = od.rank();
    let strides: [_; N] =
        std::array::from_fn(|k| broadcast_strides(ins[k].dims(rows).as_slice(), rank));
    Walk::new(od.as_slice(), std::array::from_fn(|k| &strides[k][..rank]))
}

/// y ← f(a, b) over a broadcast walk, with contiguous and scalar runs unrolled.
fn map2(w: &Walk<2>, a: &[f32], b: &[f32], y: &mut [f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    let [sa, sb] = w.inner_strides();
    for_blocks(y, |start, block| {
        let mut p = 0;
        w.runs(start, block.len(), |[oa, ob], n| {
            let out = &mut block[p..p + n];
            match (sa, sb) {
                (1, 1) => {
                    for ((v, &x1), &x2) in out.iter_mut().zip(&a[oa..oa + n]).zip(&b[ob..ob + n]) {
                        *v = f(x1, x2);
                    }
                }
                (1, 0) => {
                    let x2 = b[ob];
                    for (v, &x1) in out.iter_mut().zip(&a[oa..oa + n]) {
                        *v = f(x1, x2);
                    }
                }
                (0, 1) => {
                    let x1 = a[oa];
                    for (v, &x2) in out.iter_mut().zip(&b[ob..ob + n]) {
                        *v = f(x1, x2);
                    }
                }
                _ => {
                    for (i, v) in out.iter_mut().enumerate() {
                        *v = f(a[oa + i * sa], b[ob + i * sb]);
                    }
                }
            }
            p += n;
        });
    });
}

/// The gradient of input `which`: `g(inputs, y, dy)` per result element, written
/// straight into `dx` when the input has the result's shape, else summed (in f64,
/// in order) into each input element the walk reads it from.
#[allow(clippy::too_many_arguments)]
fn grad<const N: usize>(
    w: &Walk<N>,
    xs: [&[f32]; N],
    y: &[f32],
    dy: &[f32],
    which: usize,
    dx: &mut [f32],
    acc: &mut Vec<f64>,
    g: impl Fn([f32; N], f32, f32) -> f32 + Sync,
) {
    let st = w.inner_strides();
    if dx.len() == y.len() {
        for_blocks(dx, |start, block| {
            let mut p = 0;
            w.runs(start, block.len(), |off, n| {
                for i in 0..n {
                    let j = start + p + i;
                    let v = std::array::from_fn(|k| xs[k][off[k] + i * st[k]]);
                    block[p + i] = g(v, y[j], dy[j]);
                }
                p += n;
            });
        });
        return;
    }
    let sums = zeroed(acc, dx.len());
    let mut j = 0;
    w.runs(0, w.len(), |off, n| {
        for i in 0..n {
            let v = std::array::from_fn(|k| xs[k][off[k] + i * st[k]]);
            sums[off[which] + i * st[which]] += g(v, y[j], dy[j]) as f64;
            j += 1;
        }
    });
    store(sums, dx);
}

/// dx ← sign · dy summed over the axes input `which` is broadcast along (in f64,
/// in order, as `grad` sums), or just sign · dy when it has the result's shape.
fn signed_sum<const N: usize>(
    w: &Walk<N>,
    dy: &[f32],
    which: usize,
    dx: &mut [f32],
    acc: &mut Vec<f64>,
    sign: f32,
) {
    if dx.len() == dy.len() {
        for_blocks(dx, |start, block| {
            for (d, &g) in block.iter_mut().zip(&dy[start..]) {
                *d = sign * g;
            }
        });
        return;
    }
    let s = w.inner_strides()[which];
    let sums = zeroed(acc, dx.len());
    let mut j = 0;
    w.runs(0, w.len(), |off, n| {
        let o = off[which];
        let run = &dy[j..j + n];
        if s == 1 {
            for (a, &g) in sums[o..o + n].iter_mut().zip(run) {
                *a += (sign * g) as f64;
            }
        } else {
            for (i, &g) in run.iter().enumerate() {
                sums[o + i * s] += (sign * g) as f64;
            }
        }
        j += n;
    });
    store(sums, dx);
}

/// A binary op with broadcasting.
struct BinaryOp {
    kind: B,
    ins: [Operand; 2],
    out: Operand,
    acc: Vec<f64>,
}

impl BinaryOp {
    fn build(name: &str, kind: B, inputs: &[Operand]) -> Result<Self> {
        expect_inputs(name, inputs, 2)?;
        let out = broadcast(&[&inputs[0], &inputs[1]])?;
        Ok(BinaryOp {
            kind,
            ins: [inputs[0].clone(), inputs[1].clone()],
            out,
            acc: Vec::new(),
        })
    }
}

impl Op for BinaryOp {
    fn output(&self) -> &Operand {
        &self.out
    }

    fn forward(&mut self, xs: &[&[f32]], y: &mut [f32], rows: usize) {
        let w = broadcast_walk(&self.ins, &self.out, rows);
        with_binary!(self.kind, |k| map2(&w, xs[0], xs[1], y, |a, b| k.f(a, b)))
    }

    fn backward(
        &mut self,
        xs: &[&[f32]],
        y: &[f32],
        dy: &[f32],
        dxs: &mut [Option<&mut [f32]>],
        rows: usize,
    ) {
        let w = broadcast_walk(&self.ins, &self.out, rows);
        let pair = [xs[0], xs[1]];
        for (which, dx) in dxs.iter_mut().enumerate().take(2) {
            let Some(dx) = dx.as_deref_mut() else {
                continue;
            };
            if !self.kind.differentiable() {
                dx.fill(0.0);
                continue;
            }
            let acc = &mut self.acc;
            // Add and subtract: the gradient is ±dy itself (copied, or summed over
            // the broadcast axes), the same numbers the general path gives, faster.
            let sign = match (self.kind, which) {
                (B::Add, _) | (B::Subtract, 0) => Some(1.0f32),
                (B::Subtract, _) => Some(-1.0),
                _ => None,
            };
            if let Some(sign) = sign {
                signed_sum(&w, dy, which, dx, acc, sign);
                continue;
            }
            with_binary!(self.kind, |k| if which == 0 {
                grad(&w, pair, y, dy, 0, dx, acc, |[a, b], y, d| {
                    d * k.da(a, b, y)
                })
            } else {
                grad(&w, pair, y, dy, 1, dx, acc, |[a, b], y, d| {
                    d * k.db(a, b, y)
                })
            })
        }
    }
}

/// where(condition, x1, x2): x1 where the condition is nonzero, else x2.
struct WhereOp {
    ins: [Operand; 3],
    out: Operand,
    acc: Vec<f64>,
}

impl WhereOp {
    fn build(inputs: &[Operand]) -> Result<Self> {
        expect_inputs("where", inputs, 3)?;
        let out = broadcast(&[&inputs[0], &inputs[1], &inputs[2]])?;
        Ok(WhereOp {
            ins: [inputs[0].clone(), inputs[1].clone(), inputs[2].clone()],
            out,
            acc: Vec::new(),
        })
    }
}

impl Op for WhereOp {
    fn output(&self) -> &Operand {
        &self.out
    }

    fn forward(&mut self, xs: &[&[f32]], y: &mut [f32], rows: usize) {
        let w = broadcast_walk(&self.ins, &self.out, rows);
        let st = w.inner_strides();
        for_blocks(y, |start, block| {
            let mut p = 0;
            w.runs(start, block.len(), |off, n| {
                for (i, v) in block[p..p + n].iter_mut().enumerate() {
                    let c = xs[0][off[0] + i * st[0]];
                    *v = if c != 0.0 {
                        xs[1][off[1] + i * st[1]]
                    } else {
                        xs[2][off[2] + i * st[2]]
                    };
                }
                p += n;
            });
        });
    }

    fn backward(
        &mut self,
        xs: &[&[f32]],
        y: &[f32],
        dy: &[f32],
        dxs: &mut [Option<&mut [f32]>],
        rows: usize,
    ) {
        let w = broadcast_walk(&self.ins, &self.out, rows);
        let all = [xs[0], xs[1], xs[2]];
        if let Some(dc) = dxs[0].as_deref_mut() {
            dc.fill(0.0);
        }
        for (which, dx) in dxs.iter_mut().enumerate().take(3).skip(1) {
            let Some(dx) = dx.as_deref_mut() else {
                continue;
            };
            let pick = which == 1;
            grad(&w, all, y, dy, which, dx, &mut self.acc, |v, _, d| {
                if (v[0] != 0.0) == pick {
                    d
                } else {
                    0.0
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn erfc_matches_known_values() {
        for (x, want) in [
            (0.0, 1.0),
            (0.5, 0.479_500_122_186_953_5),
            (-1.0, 1.842_700_792_949_715),
            (1.9, 0.007_209_570_764_742_524),
            (2.5, 4.069_520_174_449_59e-4),
            (5.0, 1.537_459_794_428_034_8e-12),
        ] {
            let got = erfc(x);
            assert!(
                (got - want).abs() <= 1e-12 * want,
                "erfc({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn unary_values() {
        let x = [-2.0f32, -0.5, 0.0, 0.5, 3.0, 7.0];
        let cases: Vec<(&str, Value, [f32; 6])> = vec![
            ("negative", json!({}), [2.0, 0.5, -0.0, -0.5, -3.0, -7.0]),
            ("abs", json!({}), [2.0, 0.5, 0.0, 0.5, 3.0, 7.0]),
            ("square", json!({}), [4.0, 0.25, 0.0, 0.25, 9.0, 49.0]),
            ("sign", json!({}), [-1.0, -1.0, 0.0, 1.0, 1.0, 1.0]),
            ("relu", json!({}), [0.0, 0.0, 0.0, 0.5, 3.0, 7.0]),
            ("relu6", json!({}), [0.0, 0.0, 0.0, 0.5, 3.0, 6.0]),
            ("leaky_relu", json!({}), [-0.4, -0.1, 0.0, 0.5, 3.0, 7.0]),
            (
                "leaky_relu",
                json!({"negative_slope": 0.5}),
                [-1.0, -0.25, 0.0, 0.5, 3.0, 7.0],
            ),
            (
                "clip",
                json!({"min": -1, "max": 2.5}),
                [-1.0, -0.5, 0.0, 0.5, 2.5, 2.5],
            ),
            ("logical_not", json!({}), [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]),
            ("stop_gradient", json!({}), x),
            (
                "elu",
                json!({"alpha": 2.0}),
                [
                    2.0 * (-2.0f32).exp_m1(),
                    2.0 * (-0.5f32).exp_m1(),
                    0.0,
                    0.5,
                    3.0,
                    7.0,
                ],
            ),
            (
                "sigmoid",
                json!({}),
                [
                    0.119_202_92,
                    0.377_540_67,
                    0.5,
                    0.622_459_3,
                    0.952_574_13,
                    0.999_088_95,
                ],
            ),
            (
                "softplus",
                json!({}),
                [
                    0.126_928_01,
                    0.474_076_96,
                    std::f32::consts::LN_2,
                    0.974_077,
                    3.048_587_4,
                    7.000_911_7,
                ],
            ),
            (
                "gelu",
                json!({}),
                [-0.045_402_3, -0.154_286, 0.0, 0.345_714, 2.996_362_6, 7.0],
            ),
            (
                "gelu",
                json!({"approximate": false}),
                [
                    -0.045_500_26,
                    -0.154_268_72,
                    0.0,
                    0.345_731_3,
                    2.995_950_4,
                    7.0,
                ],
            ),
            (
                "selu",
                json!({}),
                [
                    -1.520_166_4,
                    -0.691_758_2,
                    0.0,
                    0.525_350_5,
                    3.152_103,
                    7.354_907,
                ],
            ),
        ];
        for (name, attrs, want) in cases {
            let got = eval(name, &attrs, &[Operand::fixed(&[6])], &[&x]);
            assert_close(&got, &want, 1e-5, name);
        }
        let pos = [0.25f32, 1.0, 4.0];
        assert_close(
            &eval("sqrt", &json!({}), &[Operand::fixed(&[3])], &[&pos]),
            &[0.5, 1.0, 2.0],
            1e-6,
            "sqrt",
        );
        assert_close(
            &eval("log", &json!({}), &[Operand::fixed(&[3])], &[&pos]),
            &[-1.386_294_4, 0.0, 1.386_294_4],
            1e-6,
            "log",
        );
        // NaN propagates through relu, relu6 and clip.
        let nan = [f32::NAN];
        for name in ["relu", "relu6", "clip", "sign"] {
            let got = eval(
                name,
                &json!({"min": 0, "max": 1}),
                &[Operand::fixed(&[1])],
                &[&nan],
            );
            assert!(got[0].is_nan(), "{name}");
        }
    }

    #[test]
    fn unary_gradients() {
        let shape = [Operand::fixed(&[3, 5])];
        let x = random(15, 7, 2.0);
        let pos: Vec<f32> = x.iter().map(|v| v.abs() + 0.2).collect();
        for (name, attrs) in [
            ("negative", json!({})),
            ("abs", json!({})),
            ("square", json!({})),
            ("exp", json!({})),
            ("relu", json!({})),
            ("relu6", json!({})),
            ("sigmoid", json!({})),
            ("tanh", json!({})),
            ("softplus", json!({})),
            ("silu", json!({})),
            ("gelu", json!({})),
            ("gelu", json!({"approximate": false})),
            ("elu", json!({"alpha": 0.7})),
            ("selu", json!({})),
            ("leaky_relu", json!({"negative_slope": 0.1})),
            ("clip", json!({"min": -0.5, "max": 0.8})),
        ] {
            check_grad(name, &attrs, &shape, std::slice::from_ref(&x), 0);
        }
        for name in ["sqrt", "log", "log1p"] {
            check_grad(name, &json!({}), &shape, std::slice::from_ref(&pos), 0);
        }
        for name in ["sign", "stop_gradient", "logical_not"] {
            let g = grads(name, &json!({}), &shape, &[&x], 0);
            assert!(g[0].iter().all(|&v| v == 0.0), "{name}");
        }
    }

    #[test]
    fn binary_values_with_broadcasting() {
        let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [10.0f32, 20.0, 30.0];
        let c = [100.0f32, 200.0];
        let add = |s1: &[usize], s2: &[usize], x1: &[f32], x2: &[f32]| {
            eval(
                "add",
                &json!({}),
                &[Operand::fixed(s1), Operand::fixed(s2)],
                &[x1, x2],
            )
        };
        assert_eq!(
            add(&[2, 3], &[3], &a, &b),
            [11.0, 22.0, 33.0, 14.0, 25.0, 36.0]
        );
        assert_eq!(
            add(&[2, 3], &[2, 1], &a, &c),
            [101.0, 102.0, 103.0, 204.0, 205.0, 206.0]
        );
        assert_eq!(
            add(&[2, 3], &[], &a, &[0.5]),
            [1.5, 2.5, 3.5, 4.5, 5.5, 6.5]
        );
        // (2, 1) + (3,) → (2, 3): both broadcast.
        assert_eq!(
            add(&[2, 1], &[3], &c, &b),
            [110.0, 120.0, 130.0, 210.0, 220.0, 230.0]
        );
        let two = |name: &str, x1: &[f32], x2: &[f32]| {
            eval(
                name,
                &json!({}),
                &[Operand::fixed(&[4]), Operand::fixed(&[4])],
                &[x1, x2],
            )
        };
        let x1 = [1.0f32, 2.0, 0.0, -3.0];
        let x2 = [2.0f32, 2.0, 1.0, -4.0];
        assert_eq!(two("subtract", &x1, &x2), [-1.0, 0.0, -1.0, 1.0]);
        assert_eq!(two("multiply", &x1, &x2), [2.0, 4.0, 0.0, 12.0]);
        assert_eq!(two("divide", &x1, &x2), [0.5, 1.0, 0.0, 0.75]);
        assert_eq!(two("maximum", &x1, &x2), [2.0, 2.0, 1.0, -3.0]);
        assert_eq!(two("minimum", &x1, &x2), [1.0, 2.0, 0.0, -4.0]);
        assert_eq!(two("power", &x1, &x2), [1.0, 4.0, 0.0, 1.0 / 81.0]);
        assert_eq!(two("equal", &x1, &x2), [0.0, 1.0, 0.0, 0.0]);
        assert_eq!(two("not_equal", &x1, &x2), [1.0, 0.0, 1.0, 1.0]);
        assert_eq!(two("greater", &x1, &x2), [0.0, 0.0, 0.0, 1.0]);
        assert_eq!(two("greater_equal", &x1, &x2), [0.0, 1.0, 0.0, 1.0]);
        assert_eq!(two("less", &x1, &x2), [1.0, 0.0, 1.0, 0.0]);
        assert_eq!(two("less_equal", &x1, &x2), [1.0, 1.0, 1.0, 0.0]);
        assert_eq!(two("logical_and", &x1, &x2), [1.0, 1.0, 0.0, 1.0]);
        assert_eq!(
            two("logical_or", &x1, &[0.0, 0.0, 0.0, 0.0]),
            [1.0, 1.0, 0.0, 1.0]
        );
        let m = two(
            "maximum",
            &[f32::NAN, 1.0, 0.0, 0.0],
            &[1.0, f32::NAN, 0.0, 0.0],
        );
        assert!(m[0].is_nan() && m[1].is_nan());
        // Ties send the gradient to the first operand only.
        let g = grads(
            "maximum",
            &json!({}),
            &[Operand::fixed(&[2]), Operand::fixed(&[2])],
            &[&[1.0, 2.0], &[1.0, 3.0]],
            0,
        );
        let dy = random(2, 1, 1.0);
        assert_eq!(g[0], [dy[0], 0.0]);
        assert_eq!(g[1], [0.0, dy[1]]);
    }

    #[test]
    fn binary_gradients_with_broadcasting() {
        let shapes: [(&[usize], &[usize]); 5] = [
            (&[3, 4], &[3, 4]),
            (&[3, 4], &[4]),
            (&[3, 1], &[1, 4]),
            (&[2, 3, 4], &[]),
            (&[2, 1, 4], &[3, 1]),
        ];
        for (s1, s2) in shapes {
            let ops = [Operand::fixed(s1), Operand::fixed(s2)];
            let x1 = random(ops[0].size(), 1, 1.0);
            let x2: Vec<f32> = random(ops[1].size(), 2, 1.0)
                .iter()
                .map(|v| v + 0.1f32.copysign(*v))
                .collect();
            for name in [
                "add", "subtract", "multiply", "divide", "maximum", "minimum",
            ] {
                check_grad(name, &json!({}), &ops, &[x1.clone(), x2.clone()], 0);
            }
            let base: Vec<f32> = x1.iter().map(|v| v.abs() + 0.5).collect();
            check_grad("power", &json!({}), &ops, &[base, x2.clone()], 0);
            let g = grads("greater", &json!({}), &ops, &[&x1, &x2], 0);
            assert!(g.iter().flatten().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn batched_broadcasts_match_fixed_bitwise() {
        let cases: [(Operand, Operand); 4] = [
            (Operand::batched(&[16]), Operand::fixed(&[16])),
            (Operand::batched(&[3, 4]), Operand::batched(&[1, 4])),
            (Operand::fixed(&[1, 4, 1]), Operand::batched(&[4, 5])),
            (Operand::batched(&[5]), Operand::fixed(&[])),
        ];
        for (a, b) in cases {
            for name in ["add", "multiply", "divide", "power", "maximum"] {
                check_batched(name, &json!({}), &[a.clone(), b.clone()], 3);
            }
        }
        check_batched("exp", &json!({}), &[Operand::batched(&[7])], 5);
        // Big enough to run in parallel blocks.
        check_batched(
            "add",
            &json!({}),
            &[Operand::batched(&[300, 40]), Operand::fixed(&[40])],
            9,
        );
    }

    /// Parallel blocks are fixed by size: bits do not depend on the pool.
    #[test]
    fn thread_count_does_not_change_bits() {
        let ops = [Operand::batched(&[64, 30]), Operand::batched(&[64, 1])];
        let rows = 20;
        let xs = [random(rows * 1920, 1, 1.0), random(rows * 64, 2, 1.0)];
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut op = make("divide", &json!({}), &ops);
                let mut y = vec![0.0; rows * 1920];
                op.forward(&[&xs[0], &xs[1]], &mut y, rows);
                let (mut da, mut db) = (vec![0.0; xs[0].len()], vec![0.0; xs[1].len()]);
                op.backward(
                    &[&xs[0], &xs[1]],
                    &y,
                    &xs[0],
                    &mut [Some(&mut da), Some(&mut db)],
                    rows,
                );
                [y, da, db]
            })
        };
        assert_eq!(run(1), run(4));
    }

    #[test]
    fn where_selects_and_masks_gradients() {
        let ops = [
            Operand::fixed(&[2, 1]),
            Operand::fixed(&[2, 3]),
            Operand::fixed(&[]),
        ];
        let c = [1.0f32, 0.0];
        let x1 = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let y = eval("where", &json!({}), &ops, &[&c, &x1, &[9.0]]);
        assert_eq!(y, [1.0, 2.0, 3.0, 9.0, 9.0, 9.0]);
        let g = grads("where", &json!({}), &ops, &[&c, &x1, &[9.0]], 1);
        assert!(g[0].iter().all(|&v| v == 0.0));
        let dy = random(6, 1, 1.0);
        assert_eq!(g[1], [dy[0], dy[1], dy[2], 0.0, 0.0, 0.0]);
        assert_eq!(
            g[2],
            [dy[3] as f64 + dy[4] as f64 + dy[5] as f64].map(|v| v as f32)
        );
        check_grad(
            "where",
            &json!({}),
            &ops,
            &[c.to_vec(), x1.to_vec(), vec![9.0]],
            0,
        );
        check_batched(
            "where",
            &json!({}),
            &[
                Operand::batched(&[3]),
                Operand::fixed(&[3]),
                Operand::batched(&[1]),
            ],
            4,
        );
    }

    #[test]
    fn bad_broadcasts_and_input_counts_are_errors() {
        let err = build_err("add", &[Operand::batched(&[16]), Operand::batched(&[8])]);
        assert!(
            err.contains("cannot broadcast (None, 16) with (None, 8)"),
            "{err}"
        );
        // A fixed operand may not span the batch axis...
        let err = build_err("add", &[Operand::batched(&[3]), Operand::fixed(&[2, 3])]);
        assert!(err.contains("batch axis"), "{err}");
        // ...nor may a batched operand of lower rank broadcast.
        let err = build_err(
            "multiply",
            &[Operand::batched(&[3]), Operand::fixed(&[2, 4, 3])],
        );
        assert!(err.contains("rank"), "{err}");
        let err = build_err("add", &vec![Operand::fixed(&[2]); 3]);
        assert_eq!(err, "add takes 2 inputs, got 3");
        let err = build_err("exp", &[]);
        assert_eq!(err, "exp takes 1 input, got 0");
        let err = super::super::build("clip", &json!({"min": "x"}), &[Operand::fixed(&[2])])
            .err()
            .unwrap()
            .0;
        assert!(
            err.starts_with("clip on inputs of shape (2,): 'min'"),
            "{err}"
        );
        // A fixed size-1 axis 0 is fine against a batch axis.
        let op = super::super::build(
            "add",
            &json!({}),
            &[Operand::batched(&[3]), Operand::fixed(&[1, 3])],
        )
        .unwrap();
        assert_eq!(op.output(), &Operand::batched(&[3]));
    }
}
