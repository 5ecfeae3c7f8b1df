//! The process scaler's command template: arguments with `{placeholder}`s filled in
//! for each replica. Parsed once when the config is validated, so an unknown
//! placeholder or an unbalanced brace is a config error, not a failed start.
//! `{{` and `}}` stand for literal braces. Pure.

/// A value the scaler fills in for each replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    /// `{address}`: `host:port` the replica listens on and registers.
    Address,
    /// `{host}`: the loopback address, `127.0.0.1`.
    Host,
    /// `{port}`: the port allocated to the replica.
    Port,
    /// `{cluster}`: the cluster the replica belongs to (and registers in).
    Cluster,
    /// `{register_url}`: the control plane's URL, for `--register`.
    RegisterUrl,
    /// `{replica}`: the replica's number, from 1, unique within one control-plane run.
    Replica,
}

impl Var {
    /// Every placeholder with its name.
    pub const ALL: [(&'static str, Var); 6] = [
        ("address", Var::Address),
        ("host", Var::Host),
        ("port", Var::Port),
        ("cluster", Var::Cluster),
        ("register_url", Var::RegisterUrl),
        ("replica", Var::Replica),
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(Var),
}

/// A parsed argument list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    args: Vec<Vec<Piece>>,
}

/// The values of one replica.
#[derive(Debug, Clone)]
pub struct Vars<'a> {
    /// `{host}`.
    pub host: &'a str,
    /// `{port}`.
    pub port: u16,
    /// `{cluster}`.
    pub cluster: &'a str,
    /// `{register_url}`.
    pub register_url: &'a str,
    /// `{replica}`.
    pub replica: u64,
}

impl Template {
    /// Parses the arguments after the program; the error names the argument (the
    /// first is argument 1, the program being 0) and the reason.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let args = args
            .iter()
            .enumerate()
            .map(|(i, a)| parse_arg(a).map_err(|why| format!("argument {} `{a}`: {why}", i + 1)))
            .collect::<Result<_, _>>()?;
        Ok(Template { args })
    }

    /// Whether any argument uses `var`.
    pub fn uses(&self, var: Var) -> bool {
        self.args
            .iter()
            .flatten()
            .any(|p| matches!(p, Piece::Var(v) if *v == var))
    }

    /// The arguments with `vars` filled in.
    pub fn expand(&self, vars: &Vars<'_>) -> Vec<String> {
        self.args
            .iter()
            .map(|pieces| {
                let mut out = String::new();
                for p in pieces {
                    match p {
                        Piece::Text(t) => out.push_str(t),
                        Piece::Var(Var::Address) => {
                            out.push_str(&format!("{}:{}", vars.host, vars.port))
                        }
                        Piece::Var(Var::Host) => out.push_str(vars.host),
                        Piece::Var(Var::Port) => out.push_str(&vars.port.to_string()),
                        Piece::Var(Var::Cluster) => out.push_str(vars.cluster),
                        Piece::Var(Var::RegisterUrl) => out.push_str(vars.register_url),
                        Piece::Var(Var::Replica) => out.push_str(&vars.replica.to_string()),
                    }
                }
                out
            })
            .collect()
    }
}

fn parse_arg(arg: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err("`{` without its `}` (write `{{` for a brace)".into()),
                    }
                }
                let var = Var::ALL
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| *v)
                    .ok_or_else(|| {
                        let known: Vec<String> =
                            Var::ALL.iter().map(|(n, _)| format!("{{{n}}}")).collect();
                        format!(
                            "unknown placeholder `{{{name}}}` (known: {})",
                            known.join(", ")
                        )
                    })?;
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Var(var));
            }
            '}' => return Err("`}` without its `{` (write `}}` for a brace)".into()),
            c => text.push(c),
        }
    }
    if !text.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn fills_every_placeholder_and_keeps_escaped_braces() {
        let t = Template::parse(&args(&[
            "--listen",
            "{address}",
            "--register={register_url}",
            "{cluster}-{replica}",
            "{host}:{port}",
            "{{literal}}",
            "",
        ]))
        .unwrap();
        let vars = Vars {
            host: "127.0.0.1",
            port: 9100,
            cluster: "healthcode",
            register_url: "http://127.0.0.1:7070",
            replica: 3,
        };
        assert_eq!(
            t.expand(&vars),
            args(&[
                "--listen",
                "127.0.0.1:9100",
                "--register=http://127.0.0.1:7070",
                "healthcode-3",
                "127.0.0.1:9100",
                "{literal}",
                "",
            ])
        );
        assert!(t.uses(Var::Address) && t.uses(Var::Replica));
        assert!(!Template::parse(&args(&["x"])).unwrap().uses(Var::Port));
    }

    #[test]
    fn unknown_placeholders_and_lone_braces_are_errors() {
        let e = Template::parse(&args(&["ok", "{token}"])).unwrap_err();
        assert!(
            e.contains("argument 2 `{token}`: unknown placeholder"),
            "{e}"
        );
        assert!(e.contains("{register_url}"), "{e}");
        assert!(Template::parse(&args(&["{port"])).is_err());
        assert!(Template::parse(&args(&["port}"])).is_err());
    }
}
