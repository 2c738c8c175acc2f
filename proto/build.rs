//! Compiles `contract.proto` without a system `protoc`: protox parses it in
//! pure Rust, prost generates the types, pbjson their protobuf-JSON serde.
//!
//! Knative's contract is package-less, and so is ours, but pbjson-build
//! needs a package to name modules. Neither the binary wire format nor the
//! JSON mapping carries the package, so we give the descriptor one in memory
//! only: compatibility is untouched.

use prost_types::{DescriptorProto, FileDescriptorSet};

const PACKAGE: &str = "contract";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=contract.proto");
    let mut descriptors: FileDescriptorSet = protox::compile(["contract.proto"], ["."])?;
    for file in &mut descriptors.file {
        file.package = Some(PACKAGE.to_owned());
        file.message_type.iter_mut().for_each(qualify_type_names);
    }
    let descriptor_bytes = prost::Message::encode_to_vec(&descriptors);
    // Kept for `unknown`, which names the fields a newer control plane
    // wrote that this schema does not have.
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("contract.descriptor"), &descriptor_bytes)?;

    prost_build::Config::new().compile_fds(descriptors)?;
    // Knative's data planes parse the contract ignoring unknown fields and
    // enum names (protojson's DiscardUnknown, Java's ignoringUnknownFields),
    // so a control plane one release ahead does not stop them.
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .ignore_unknown_fields()
        .ignore_unknown_enum_variants()
        .build(&[format!(".{PACKAGE}")])?;
    Ok(())
}

/// protox resolved every field type to a fully qualified `.Name`; move them
/// into the package.
fn qualify_type_names(message: &mut DescriptorProto) {
    for field in &mut message.field {
        if let Some(name) = field.type_name.as_mut() {
            *name = format!(".{PACKAGE}{name}");
        }
    }
    message.nested_type.iter_mut().for_each(qualify_type_names);
}
