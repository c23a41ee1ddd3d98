//! **Loading an upload** ([`Runtime::probe`]): the modules go to a private temporary
//! directory (removed afterwards) with a config whose main module is a generated probe
//! that imports the upload's main module and, from a `test` handler, prints the names
//! of its exports and whether each is a class; `workerd test` runs it (10 s timeout).
//! A module that does not load (syntax error, failing top-level code, unknown
//! compatibility flag) makes workerd fail: the upload is refused with the runtime's
//! message. The exports come from the runtime, never from reading the source.
//!
//! Without workerd, [`static_exports`] reads what a module seems to export from its
//! text instead.

use std::process::Stdio;

use tokio::process::Command;

use super::{
    Exports, LOAD_TIMEOUT, LoadError, Runtime, WorkerSpec, js, runtime_message, specifier, text,
};

/// The name of the generated probe module (not an upload's module name).
const PROBE_MODULE: &str = "__flaredock_probe__.js";
const EXPORTS_MARK: &str = "FLAREDOCK-EXPORTS ";

/// The probe: imports the main module, prints its exports from a `test` handler.
fn probe_source(main: &str) -> String {
    format!(
        "import * as m from {spec};\n\
         export default {{ test() {{\n\
           const out = {{}};\n\
           for (const k of Object.keys(m)) {{\n\
             const v = m[k];\n\
             out[k] = typeof v === 'function' ? (/^class[\\s{{]/.test(Function.prototype.toString.call(v)) ? 'class' : 'function') : typeof v;\n\
           }}\n\
           console.log({mark} + JSON.stringify(out));\n\
         }} }};\n",
        spec = specifier(main),
        mark = js(EXPORTS_MARK),
    )
}

impl Runtime {
    /// Loads an upload in workerd; its exports, or why it did not load. Nothing is
    /// left on disk.
    pub async fn probe(&self, spec: &WorkerSpec) -> Result<Exports, LoadError> {
        let dir = tempfile::Builder::new()
            .prefix("probe-")
            .tempdir_in(self.root.path())
            .map_err(|e| LoadError::Runtime(e.to_string()))?;
        let modules = Self::write_modules(
            dir.path(),
            spec,
            &[(PROBE_MODULE, probe_source(&spec.main))],
        )?;
        let config = format!(
            "using Workerd = import \"/workerd/workerd.capnp\";\n\
             const config :Workerd.Config = ( services = [ (name = \"upload\", worker = .w) ] );\n\
             const w :Workerd.Worker = ( modules = {modules}, compatibilityDate = {date}, compatibilityFlags = {flags}, bindings = [ {bindings} ] );\n",
            date = text(&self.date(spec.compatibility_date.as_deref())),
            flags = self.flags(spec),
            bindings = Self::text_bindings(spec).join(", "),
        );
        let path = dir.path().join("config.capnp");
        std::fs::write(&path, config).map_err(|e| LoadError::Runtime(e.to_string()))?;
        let child = Command::new(&self.bin)
            .arg("test")
            .arg(&path)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| LoadError::Runtime(format!("{}: {e}", self.bin.display())))?;
        let out = tokio::time::timeout(LOAD_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| {
                LoadError::Refused(format!(
                    "the Worker did not load within {} s",
                    LOAD_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| LoadError::Runtime(e.to_string()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let exports = stdout
            .lines()
            .find_map(|l| l.strip_prefix(EXPORTS_MARK))
            .and_then(|j| serde_json::from_str::<Exports>(j).ok());
        match exports {
            Some(e) if out.status.success() => Ok(e),
            _ => Err(LoadError::Refused(runtime_message(&stderr))),
        }
    }
}

/// **Static fallback, only without workerd**: the classes a module seems to export
/// (`export class Name`, `export default class Name`, `export { A, B as C }`), read
/// from its text with comments and string literals removed. It cannot tell a class
/// from a constant; the runtime can, and is used whenever it is installed.
pub fn static_exports(source: &str) -> Exports {
    let code = strip_comments_and_strings(source);
    let mut out = Exports::new();
    let ident = |s: &str| -> Option<String> {
        let id: String = s
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '$')
            .collect();
        (!id.is_empty()).then_some(id)
    };
    let mut rest = code.as_str();
    while let Some(i) = rest.find("export") {
        let after = rest[i + "export".len()..].trim_start();
        if let Some(d) = after.strip_prefix("default ") {
            out.insert("default".into(), "object".into());
            let _ = d;
        } else if let Some(c) = after.strip_prefix("class ")
            && let Some(id) = ident(c.trim_start())
        {
            out.insert(id, "class".into());
        } else if let Some(list) = after.strip_prefix('{')
            && let Some(end) = list.find('}')
        {
            for item in list[..end].split(',') {
                let name = item.rsplit(" as ").next().unwrap_or(item).trim();
                if let Some(id) = ident(name) {
                    out.insert(id, "class".into());
                }
            }
        }
        rest = &rest[i + "export".len()..];
    }
    out
}

fn strip_comments_and_strings(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                out.push(' ');
            }
            '"' | '\'' | '`' => {
                let mut escaped = false;
                for x in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if x == '\\' {
                        escaped = true;
                    } else if x == c {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_fallback_ignores_comments_and_strings() {
        let src = "// export class InComment {}\nconst s = 'export class InString {}';\nexport class Real {}\nexport default { fetch() {} }";
        let found: Vec<String> = static_exports(src).into_keys().collect();
        assert_eq!(found, ["Real", "default"]);
    }
}
