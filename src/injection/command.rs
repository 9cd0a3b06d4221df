//! The `inject` command.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::flags::InjectionArgs;
use super::inject::Injector;
use super::manifest;

/// `inject`: flags.
#[derive(Debug, Args)]
pub struct InjectArgs {
    #[command(flatten)]
    injection: InjectionArgs,
    /// Manifest to read (`-` for standard input); repeatable.
    #[arg(
        short = 'f',
        long = "filename",
        env = "IRSA_INJECT_FILES",
        value_delimiter = ',',
        required = true
    )]
    files: Vec<PathBuf>,
    /// YAML with ServiceAccounts (also read from the input itself); repeatable.
    #[arg(
        long = "service-account",
        env = "IRSA_INJECT_SERVICE_ACCOUNTS",
        value_delimiter = ','
    )]
    service_accounts: Vec<PathBuf>,
    /// Namespace of objects that set none.
    #[arg(short, long, env = "IRSA_NAMESPACE", default_value = "default")]
    namespace: String,
}

/// Reads the manifests and ServiceAccounts, prints the mutated YAML and the warnings.
pub fn run(args: InjectArgs) -> Result<()> {
    let cfg = args.injection.config()?;
    let read = |path: &PathBuf| -> Result<(String, String)> {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read standard input")?;
            Ok(("<stdin>".to_owned(), text))
        } else {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Ok((path.display().to_string(), text))
        }
    };
    let mut inputs = Vec::new();
    for path in &args.files {
        let (name, text) = read(path)?;
        inputs.push((manifest::parse(&text, &name)?, name));
    }
    let mut service_accounts = Vec::new();
    for path in &args.service_accounts {
        let (name, text) = read(path)?;
        let docs = manifest::parse(&text, &name)?;
        service_accounts.extend(manifest::service_accounts(
            &docs,
            &args.namespace,
            &cfg,
            &name,
        )?);
    }
    for (docs, name) in &inputs {
        service_accounts.extend(manifest::service_accounts(
            docs,
            &args.namespace,
            &cfg,
            name,
        )?);
    }
    let injector = Injector::new(&cfg, &args.namespace, service_accounts);

    let mut out = String::new();
    for (docs, name) in &mut inputs {
        for doc in docs.iter_mut() {
            for report in injector.inject(doc, name)? {
                for warning in &report.warnings {
                    eprintln!(
                        "warning: {name}: document {} ({}): {warning}",
                        doc.number, report.object
                    );
                }
            }
            if !out.is_empty() {
                out.push_str("---\n");
            }
            out.push_str(&serde_saphyr::to_string(&doc.value).context("cannot write YAML")?);
        }
    }
    std::io::stdout()
        .write_all(out.as_bytes())
        .context("cannot write to standard output")?;
    Ok(())
}
