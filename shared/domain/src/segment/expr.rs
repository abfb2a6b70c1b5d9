//! A segment's expression: block numbers combined with AND, OR, NOT and parentheses, as seed
//! 002 writes it (`1 AND 2 AND NOT 3`). NOT binds tightest, then AND, then OR.

use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Block(String),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Block(String),
    And,
    Or,
    Not,
    Open,
    Close,
}

fn tokens(s: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '(' || c == '（' {
            out.push(Token::Open);
            chars.next();
        } else if c == ')' || c == '）' {
            out.push(Token::Close);
            chars.next();
        } else if c.is_alphanumeric() || c == '_' || c == '-' {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_alphanumeric() || c == '_' || c == '-' {
                    word.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(match word.to_ascii_uppercase().as_str() {
                "AND" => Token::And,
                "OR" => Token::Or,
                "NOT" => Token::Not,
                _ => Token::Block(word),
            });
        } else {
            return Err(format!("unexpected {c:?}"));
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.not()?;
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.peek() == Some(&Token::Not) {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, String> {
        match self.tokens.get(self.at).cloned() {
            Some(Token::Block(b)) => {
                self.at += 1;
                Ok(Expr::Block(b))
            }
            Some(Token::Open) => {
                self.at += 1;
                let e = self.or()?;
                if self.peek() != Some(&Token::Close) {
                    return Err("a '(' is not closed".into());
                }
                self.at += 1;
                Ok(e)
            }
            Some(t) => Err(format!("expected a block number, found {t:?}")),
            None => Err("the expression ends too early".into()),
        }
    }
}

impl Expr {
    pub fn parse(s: &str) -> Result<Expr, String> {
        let mut p = Parser {
            tokens: tokens(s)?,
            at: 0,
        };
        let e = p.or()?;
        if let Some(t) = p.peek() {
            return Err(format!("unexpected {t:?} after a complete expression"));
        }
        Ok(e)
    }

    /// The block numbers the expression names.
    pub fn blocks(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.collect(&mut out);
        out
    }

    fn collect(&self, out: &mut BTreeSet<String>) {
        match self {
            Expr::Block(b) => {
                out.insert(b.clone());
            }
            Expr::Not(e) => e.collect(out),
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.collect(out);
                b.collect(out);
            }
        }
    }

    /// Evaluates with `block` telling whether each block holds (AND and OR short-circuit).
    pub fn eval(&self, block: &mut impl FnMut(&str) -> bool) -> bool {
        match self {
            Expr::Block(b) => block(b),
            Expr::Not(e) => !e.eval(block),
            Expr::And(a, b) => a.eval(block) && b.eval(block),
            Expr::Or(a, b) => a.eval(block) || b.eval(block),
        }
    }
}
