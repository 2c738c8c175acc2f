//! Evaluation: a value and the first error met. An operator whose operand
//! failed yields its type's zero value (false, 0, ""), as the
//! specification and its conformance suite say.

use ferry_event::Event;

use crate::{
    parser::{BinaryOp, Expression, Node},
    value::Value,
    ErrorKind,
};

type Out = (Value, Option<ErrorKind>);

impl Expression {
    /// Evaluates against an event.
    pub fn evaluate(&self, event: &Event) -> Out {
        eval(&self.root, event)
    }

    /// Whether the event passes: only a Boolean true does.
    pub fn matches(&self, event: &Event) -> bool {
        matches!(self.evaluate(event), (Value::Boolean(true), None))
    }
}

fn eval(node: &Node, event: &Event) -> Out {
    match node {
        Node::Literal(v) => (v.clone(), None),
        Node::Attribute(name) => match event.get(name) {
            Some(ferry_event::Value::String(s)) => (Value::String(s.clone()), None),
            Some(ferry_event::Value::Integer(i)) => (Value::Integer(*i as i32), None),
            Some(ferry_event::Value::Boolean(b)) => (Value::Boolean(*b), None),
            None => (Value::Boolean(false), Some(ErrorKind::MissingAttribute)),
        },
        Node::Exists(name) => (Value::Boolean(event.get(name).is_some()), None),
        Node::Not(inner) => match eval(inner, event) {
            (_, Some(e)) => (Value::Boolean(false), Some(e)),
            (v, None) => {
                let (b, e) = to_bool(&v, false);
                (Value::Boolean(!b), e)
            }
        },
        Node::Negate(inner) => match eval(inner, event) {
            (_, Some(e)) => (Value::Integer(0), Some(e)),
            (v, None) => {
                let (i, e) = to_int(&v);
                match i.checked_neg() {
                    Some(n) => (Value::Integer(n), e),
                    None => (Value::Integer(i32::MAX), e.or(Some(ErrorKind::Math))),
                }
            }
        },
        Node::Binary(op, l, r) => binary(*op, l, r, event),
        Node::Like {
            value,
            pattern,
            negated,
        } => match eval(value, event) {
            (_, Some(e)) => (Value::Boolean(false), Some(e)),
            (v, None) => (
                Value::Boolean(pattern.matches(&to_string(&v)) != *negated),
                None,
            ),
        },
        Node::In {
            value,
            set,
            negated,
        } => {
            let v = match eval(value, event) {
                (_, Some(e)) => return (Value::Boolean(false), Some(e)),
                (v, None) => v,
            };
            let mut found = false;
            for element in set {
                match eval(element, event) {
                    (_, Some(e)) => return (Value::Boolean(false), Some(e)),
                    (element, None) => found |= equal(&element, &v).0,
                }
            }
            (Value::Boolean(found != *negated), None)
        }
        Node::Call { name, args } => call(name, args, event),
    }
}

fn binary(op: BinaryOp, l: &Node, r: &Node, event: &Event) -> Out {
    use BinaryOp::*;
    let zero = match op {
        Mul | Div | Mod | Add | Sub => Value::Integer(0),
        _ => Value::Boolean(false),
    };
    // AND and OR do not evaluate their right side when the left decides.
    if matches!(op, And | Or) {
        let (lv, le) = eval(l, event);
        if le.is_some() {
            return (zero, le);
        }
        let (lb, lce) = to_bool(&lv, false);
        if lce.is_some() {
            return (zero, lce);
        }
        if (op == And && !lb) || (op == Or && lb) {
            return (Value::Boolean(lb), None);
        }
        let (rv, re) = eval(r, event);
        if re.is_some() {
            return (zero, re);
        }
        let (rb, rce) = to_bool(&rv, false);
        return (Value::Boolean(rb), rce);
    }
    let (lv, le) = eval(l, event);
    let (rv, re) = eval(r, event);
    if let Some(e) = le.or(re) {
        return (zero, Some(e));
    }
    match op {
        Eq => {
            let (b, e) = equal(&lv, &rv);
            (Value::Boolean(b), e)
        }
        NotEq => {
            let (b, e) = equal(&lv, &rv);
            (Value::Boolean(!b && e.is_none()), e)
        }
        Xor => {
            let ((a, ae), (b, be)) = (to_bool(&lv, false), to_bool(&rv, false));
            (Value::Boolean(a ^ b), ae.or(be))
        }
        Lt | LtEq | Gt | GtEq => {
            let ((a, ae), (b, be)) = (to_int(&lv), to_int(&rv));
            let result = match op {
                Lt => a < b,
                LtEq => a <= b,
                Gt => a > b,
                _ => a >= b,
            };
            (Value::Boolean(result), ae.or(be))
        }
        _ => {
            let ((a, ae), (b, be)) = (to_int(&lv), to_int(&rv));
            if let Some(e) = ae.or(be) {
                return (zero, Some(e));
            }
            let result = match op {
                Mul => a.checked_mul(b),
                Add => a.checked_add(b),
                Sub => a.checked_sub(b),
                Div if b == 0 => None,
                Div => a.checked_div(b),
                Mod if b == 0 => None,
                _ => a.checked_rem(b),
            };
            match result {
                Some(n) => (Value::Integer(n), None),
                None => (zero, Some(ErrorKind::Math)),
            }
        }
    }
}

/// `=`: the left side is cast to the right side's type.
fn equal(l: &Value, r: &Value) -> (bool, Option<ErrorKind>) {
    match r {
        Value::Integer(b) => {
            let (a, e) = to_int(l);
            (e.is_none() && a == *b, e)
        }
        Value::Boolean(b) => {
            let (a, e) = to_bool(l, false);
            (e.is_none() && a == *b, e)
        }
        Value::String(b) => (to_string(l) == *b, None),
    }
}

fn to_int(v: &Value) -> (i32, Option<ErrorKind>) {
    match v {
        Value::Integer(i) => (*i, None),
        Value::Boolean(b) => (i32::from(*b), None),
        Value::String(s) => match s.trim().parse::<i32>() {
            Ok(i) => (i, None),
            Err(_) => (0, Some(ErrorKind::Cast)),
        },
    }
}

/// Implicitly (an operator's operand) only strings become booleans; the
/// BOOL function (`explicit`) also takes integers.
fn to_bool(v: &Value, explicit: bool) -> (bool, Option<ErrorKind>) {
    match v {
        Value::Boolean(b) => (*b, None),
        Value::String(s) if s.eq_ignore_ascii_case("true") => (true, None),
        Value::String(s) if s.eq_ignore_ascii_case("false") => (false, None),
        Value::Integer(i) if explicit => (*i != 0, None),
        _ => (false, Some(ErrorKind::Cast)),
    }
}

fn to_string(v: &Value) -> String {
    match v {
        Value::Integer(i) => i.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::String(s) => s.clone(),
    }
}

fn call(name: &str, args: &[Node], event: &Event) -> Out {
    let arity_ok = match name {
        "LENGTH" | "LOWER" | "UPPER" | "TRIM" | "ABS" | "INT" | "BOOL" | "STRING" => {
            args.len() == 1
        }
        "LEFT" | "RIGHT" => args.len() == 2,
        "SUBSTRING" => args.len() == 2 || args.len() == 3,
        "CONCAT" => true,
        "CONCAT_WS" => !args.is_empty(),
        _ => false,
    };
    if !arity_ok {
        return (Value::Boolean(false), Some(ErrorKind::MissingFunction));
    }
    let zero = match name {
        "LENGTH" | "ABS" | "INT" => Value::Integer(0),
        "BOOL" => Value::Boolean(false),
        _ => Value::String(String::new()),
    };
    let mut values = Vec::with_capacity(args.len());
    for arg in args {
        match eval(arg, event) {
            (_, Some(e)) => return (zero, Some(e)),
            (v, None) => values.push(v),
        }
    }
    let s = |i: usize| to_string(&values[i]);
    let int = |i: usize| to_int(&values[i]);
    match name {
        "LENGTH" => (Value::Integer(s(0).chars().count() as i32), None),
        "LOWER" => (Value::String(s(0).to_lowercase()), None),
        "UPPER" => (Value::String(s(0).to_uppercase()), None),
        "TRIM" => (Value::String(s(0).trim().to_owned()), None),
        "CONCAT" => (Value::String(values.iter().map(to_string).collect()), None),
        "CONCAT_WS" => {
            let parts: Vec<String> = values[1..].iter().map(to_string).collect();
            (Value::String(parts.join(&s(0))), None)
        }
        "ABS" => match int(0) {
            (_, Some(e)) => (zero, Some(e)),
            (i, None) => match i.checked_abs() {
                Some(a) => (Value::Integer(a), None),
                None => (Value::Integer(i32::MAX), Some(ErrorKind::Math)),
            },
        },
        "INT" => {
            let (i, e) = int(0);
            (Value::Integer(i), e)
        }
        "BOOL" => {
            let (b, e) = to_bool(&values[0], true);
            (Value::Boolean(b), e)
        }
        "STRING" => (Value::String(s(0)), None),
        "LEFT" | "RIGHT" => {
            let text = s(0);
            let (n, e) = int(1);
            if e.is_some() {
                return (Value::String(text), e);
            }
            if n < 0 {
                return (Value::String(text), Some(ErrorKind::FunctionEvaluation));
            }
            let chars: Vec<char> = text.chars().collect();
            let n = (n as usize).min(chars.len());
            let part = if name == "LEFT" {
                &chars[..n]
            } else {
                &chars[chars.len() - n..]
            };
            (Value::String(part.iter().collect()), None)
        }
        _ => {
            let (pos, pe) = int(1);
            let (len, le) = if values.len() == 3 {
                let (l, e) = int(2);
                (Some(l), e)
            } else {
                (None, None)
            };
            if let Some(e) = pe.or(le) {
                return (zero, Some(e));
            }
            substring(&s(0), pos, len)
        }
    }
}

/// SUBSTRING as in SQL: 1-based, negative positions count from the end,
/// position 0 is empty, positions beyond the string are an error.
fn substring(text: &str, pos: i32, len: Option<i32>) -> Out {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len() as i64;
    let pos = i64::from(pos);
    if pos == 0 {
        return (Value::String(String::new()), None);
    }
    if pos.abs() > n || len.is_some_and(|l| l < 0) {
        return (
            Value::String(String::new()),
            Some(ErrorKind::FunctionEvaluation),
        );
    }
    let start = if pos > 0 { pos - 1 } else { n + pos };
    let end = len.map_or(n, |l| (start + i64::from(l)).min(n));
    (
        Value::String(chars[start as usize..end as usize].iter().collect()),
        None,
    )
}
