//! Prints every Riffle CRD as YAML; `make crds` writes the output to `crds/`.

fn main() -> anyhow::Result<()> {
    print!("{}", riffle_operator::crd::render_yaml()?);
    Ok(())
}
