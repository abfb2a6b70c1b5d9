//! The one builder of DynamoDB update expressions and conditions: SET, REMOVE and ADD clauses
//! with placeholder names and values, and the conditions puts, updates and deletes carry.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::table::{n, Item};

/// A condition's parts, as the SDK's builders take them.
pub(crate) type ConditionParts = (Option<String>, Option<HashMap<String, String>>, Option<Item>);

/// An update's parts, as the SDK's builders take them.
pub(crate) type ExpressionParts = (String, Option<String>, Option<HashMap<String, String>>, Option<Item>);

/// An update expression with its condition, names and values: the one builder of SET,
/// REMOVE and ADD clauses. Attribute names go through placeholders, so any name is safe.
#[derive(Debug, Default, Clone)]
pub struct Update {
    set: Vec<String>,
    remove: Vec<String>,
    add: Vec<String>,
    condition: Option<String>,
    names: HashMap<String, String>,
    values: Item,
}

impl Update {
    pub fn new() -> Self {
        Self::default()
    }

    fn name(&mut self, name: &str) -> String {
        let placeholder = format!("#{}", name.replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
        match self.names.get(&placeholder) {
            Some(existing) if existing != name => {
                let p = format!("#n{}", self.names.len());
                self.names.insert(p.clone(), name.to_owned());
                p
            }
            _ => {
                self.names.insert(placeholder.clone(), name.to_owned());
                placeholder
            }
        }
    }

    fn value(&mut self, v: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), v);
        placeholder
    }

    /// `name = value`.
    pub fn set(mut self, name: &str, v: AttributeValue) -> Self {
        let (n, p) = (self.name(name), self.value(v));
        self.set.push(format!("{n} = {p}"));
        self
    }

    /// `map.name = value` (a field inside a map attribute).
    pub fn set_in(mut self, map: &str, name: &str, v: AttributeValue) -> Self {
        let m = self.name(map);
        let f = format!("#f{}", self.names.len());
        self.names.insert(f.clone(), name.to_owned());
        let p = self.value(v);
        self.set.push(format!("{m}.{f} = {p}"));
        self
    }

    /// `name = if_not_exists(name, value)`: the first value is kept.
    pub fn set_if_absent(mut self, name: &str, v: AttributeValue) -> Self {
        let (n, p) = (self.name(name), self.value(v));
        self.set.push(format!("{n} = if_not_exists({n}, {p})"));
        self
    }

    /// `name = name + value`.
    pub fn increment(mut self, name: &str, by: i64) -> Self {
        let (n, p) = (self.name(name), self.value(n(by)));
        self.set.push(format!("{n} = {n} + {p}"));
        self
    }

    /// `ADD name value` (creates the counter at zero).
    pub fn add(mut self, name: &str, by: i64) -> Self {
        let (n, p) = (self.name(name), self.value(n(by)));
        self.add.push(format!("{n} {p}"));
        self
    }

    pub fn remove(mut self, name: &str) -> Self {
        let n = self.name(name);
        self.remove.push(n);
        self
    }

    /// Sets or removes, as `v` says.
    pub fn set_or_remove(self, name: &str, v: Option<AttributeValue>) -> Self {
        match v {
            Some(v) => self.set(name, v),
            None => self.remove(name),
        }
    }

    /// The write happens only if `expr` holds. `{name}` in `expr` stands for an attribute's
    /// placeholder, `:name` for a value given in `values`.
    pub fn when(mut self, expr: &str, values: &[(&str, AttributeValue)]) -> Self {
        let mut out = String::with_capacity(expr.len());
        let mut rest = expr;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let Some(end) = rest[start..].find('}') else { break };
            let placeholder = self.name(&rest[start + 1..start + end]);
            out.push_str(&placeholder);
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        for (name, v) in values {
            self.values.insert((*name).to_owned(), v.clone());
        }
        self.condition = Some(match self.condition.take() {
            Some(c) => format!("({c}) AND ({out})"),
            None => out,
        });
        self
    }

    /// The write happens only if the item exists.
    pub fn if_exists(self) -> Self {
        self.when("attribute_exists(pk)", &[])
    }

    fn expression(&self) -> String {
        let mut parts = Vec::new();
        if !self.set.is_empty() {
            parts.push(format!("SET {}", self.set.join(", ")));
        }
        if !self.remove.is_empty() {
            parts.push(format!("REMOVE {}", self.remove.join(", ")));
        }
        if !self.add.is_empty() {
            parts.push(format!("ADD {}", self.add.join(", ")));
        }
        parts.join(" ")
    }

    pub(crate) fn parts(self) -> ExpressionParts {
        let expr = self.expression();
        (
            expr,
            self.condition,
            (!self.names.is_empty()).then_some(self.names),
            (!self.values.is_empty()).then_some(self.values),
        )
    }
}

/// A condition for a put or a delete.
#[derive(Debug, Clone, Default)]
pub struct Condition {
    expr: Option<String>,
    names: HashMap<String, String>,
    values: Item,
}

impl Condition {
    /// No condition: the write always happens.
    pub fn none() -> Self {
        Self::default()
    }

    /// Only if no item with this key exists yet.
    pub fn absent() -> Self {
        Self::expr("attribute_not_exists(pk)", &[])
    }

    /// `{name}` stands for an attribute's placeholder, `:name` for a value given in `values`.
    pub fn expr(expr: &str, values: &[(&str, AttributeValue)]) -> Self {
        let u = Update::new().when(expr, values);
        Condition {
            expr: u.condition,
            names: u.names,
            values: u.values,
        }
    }
}

impl Condition {
    pub(crate) fn parts(self) -> ConditionParts {
        (
            self.expr,
            (!self.names.is_empty()).then_some(self.names),
            (!self.values.is_empty()).then_some(self.values),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::s;

    #[test]
    fn update_expression_names_and_values() {
        let u = Update::new()
            .set("status", s("sent"))
            .set_in("fields", "会社", s("x"))
            .increment("submissions", 1)
            .remove("due_pk")
            .add("n", 1)
            .when("{status} = :claimed", &[(":claimed", s("claimed"))]);
        let (expr, cond, names, values) = u.parts();
        assert_eq!(
            expr,
            "SET #status = :v0, #fields.#f2 = :v1, #submissions = #submissions + :v2 REMOVE #due_pk ADD #n :v3"
        );
        assert_eq!(cond.as_deref(), Some("#status = :claimed"));
        let names = names.unwrap();
        assert_eq!(names["#f2"], "会社");
        assert_eq!(names["#status"], "status");
        assert_eq!(values.unwrap().len(), 5);
    }

    #[test]
    fn conditions_combine() {
        let u = Update::new()
            .set("a", s("1"))
            .if_exists()
            .when("{b} < :now", &[(":now", s("t"))]);
        assert_eq!(u.condition.as_deref(), Some("(attribute_exists(pk)) AND (#b < :now)"));
    }
}
