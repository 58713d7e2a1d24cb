//! The rollback steps of a bucket or directory source.

use backup_core::SourceManifest;
use backup_core::runbook::{RunbookContext, RunbookStep, json_literal, shell_quote};

use crate::bucket::INDEX_FORMAT;

/// The steps for a bucket or directory source: `pre-deploy restore`, and for a local store the
/// raw equivalent (python3 reads the index, copies each blob to its key, checking its sha256).
pub(crate) fn runbook_steps(source: &SourceManifest, ctx: &RunbookContext<'_>) -> Vec<RunbookStep> {
    let mut steps = vec![RunbookStep {
        title: format!(
            "Restore {} {} with pre-deploy (safety snapshot of what is there first; objects the backup lacks are left alone; add --to URL to restore elsewhere)",
            source.kind, source.name
        ),
        commands: vec![ctx.restore_command(source)],
    }];
    let index = source.artifacts.iter().find(|a| a.format == INDEX_FORMAT);
    if let (true, Some(index), "directory") = (ctx.local_store, index, source.kind.as_str()) {
        let index_path = (ctx.locate)(&index.key);
        let sealed = backup_core::encryption::is_encrypted(index);
        let blobs = (ctx.locate)("blobs/sha256");
        let store_root = (ctx.locate)("");
        let target = source
            .location
            .strip_prefix("file://")
            .unwrap_or(&source.location);
        // JSON string literals are Python string literals; keys that would leave the target
        // (absolute, `..`) stop the script. A sealed blob is decrypted by the age CLI into the
        // destination, then its sha256 checked.
        let (blobs, store_root, target) = (
            json_literal(&blobs),
            json_literal(&store_root),
            json_literal(target),
        );
        let script = if sealed {
            format!(
                "import json,sys,os,hashlib,subprocess\n\
                 for line in sys.stdin:\n\
                 \x20e=json.loads(line); h=e['sha256'].split(':')[-1]; k=e['key']; b=e['blob']\n\
                 \x20assert not os.path.isabs(k) and '..' not in k.split('/') and len(h)==64, k\n\
                 \x20assert b.startswith('blobs/sealed/') and '..' not in b.split('/'), b\n\
                 \x20src=os.path.join({store_root},b); dst=os.path.join({target},k)\n\
                 \x20os.makedirs(os.path.dirname(dst) or '.',exist_ok=True)\n\
                 \x20subprocess.run(['age','-d','-i',os.environ['PREDEPLOY_AGE_IDENTITY_FILE'],src],stdout=open(dst,'wb'),check=True)\n\
                 \x20assert hashlib.sha256(open(dst,'rb').read()).hexdigest()==h, dst\n"
            )
        } else {
            format!(
                "import json,sys,os,hashlib,shutil\n\
                 for line in sys.stdin:\n\
                 \x20e=json.loads(line); h=e['sha256'].split(':')[-1]; k=e['key']\n\
                 \x20assert not os.path.isabs(k) and '..' not in k.split('/') and len(h)==64, k\n\
                 \x20src=os.path.join({blobs},h[:2],h); dst=os.path.join({target},k)\n\
                 \x20assert hashlib.sha256(open(src,'rb').read()).hexdigest()==h, src\n\
                 \x20os.makedirs(os.path.dirname(dst) or '.',exist_ok=True); shutil.copyfile(src,dst)\n"
            )
        };
        let read_index = if sealed {
            format!(
                "age -d -i {} {} | zstd -dc",
                backup_core::runbook::AGE_IDENTITY,
                shell_quote(&index_path)
            )
        } else {
            format!("zstd -dc {}", shell_quote(&index_path))
        };
        steps.push(RunbookStep {
            title: format!(
                "Or without pre-deploy: copy every file of directory {} back from its blob (checks each sha256; copy the directory aside first if you need its current state)",
                source.name
            ),
            commands: vec![
                format!(
                    "echo {} | sha256sum -c -",
                    shell_quote(&format!("{}  {index_path}", index.sha256.hex()))
                ),
                format!("{read_index} | python3 -c {}", shell_quote(&script)),
            ],
        });
    }
    steps
}
