//! Where captured JSON Lines are read from, for `cat` and `replay`: local
//! files and folders, or `s3://bucket/prefix` (listed page by page, read one
//! object at a time).

use std::path::{Path, PathBuf};

use crate::s3::S3;

type Error = Box<dyn std::error::Error>;

/// How to reach S3 when a source is `s3://...`; the same flags as `demo`.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct S3Args {
    /// A custom S3 endpoint (MinIO, Garage, moto), addressed path-style.
    /// Credentials come from the AWS default chain.
    #[arg(long, value_name = "URL")]
    pub(crate) s3_endpoint_url: Option<String>,
    /// The S3 region. Default: the AWS default chain, else us-east-1.
    #[arg(long, value_name = "REGION")]
    pub(crate) s3_region: Option<String>,
    /// Keys per ListObjectsV2 page (S3's default is 1000).
    #[arg(long, value_name = "N", hide = true)]
    pub(crate) s3_page_size: Option<i32>,
}

/// One capture file: its name (path or `s3://` URL) and where to read it.
enum Item {
    Local(PathBuf),
    Object {
        s3: usize,
        bucket: String,
        key: String,
    },
}

/// Every capture file named by a list of sources, in order.
pub(crate) struct Files {
    items: Vec<Item>,
    clients: Vec<S3>,
}

impl Files {
    /// Lists every `.jsonl` file under each source (a file is taken as it
    /// is; hidden entries are skipped). An `s3://bucket/prefix` source
    /// lists the objects under `prefix` taken as a folder, or the one
    /// object whose key it is.
    pub(crate) fn list(sources: &[String], s3: &S3Args) -> Result<Files, Error> {
        let mut files = Files {
            items: Vec::new(),
            clients: Vec::new(),
        };
        for source in sources {
            match source.strip_prefix("s3://") {
                Some(rest) => files.list_s3(source, rest, s3)?,
                None => collect(Path::new(source), &mut files.items)
                    .map_err(|e| format!("{source}: {e}"))?,
            }
        }
        Ok(files)
    }

    fn list_s3(&mut self, source: &str, rest: &str, args: &S3Args) -> Result<(), Error> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{source}: no bucket name (expected s3://bucket/prefix)").into());
        }
        let client = S3::new(
            bucket,
            args.s3_endpoint_url.as_deref(),
            args.s3_region.as_deref(),
        )?;
        let keys = client.keys_paged(prefix, args.s3_page_size)?;
        let folder = if prefix.is_empty() || prefix.ends_with('/') {
            prefix.to_string()
        } else {
            format!("{prefix}/")
        };
        let s3 = self.clients.len();
        self.clients.push(client);
        for key in keys {
            let exact = key == prefix;
            let under = key.starts_with(&folder) && key.ends_with(".jsonl");
            let hidden = key[folder.len().min(key.len())..]
                .split('/')
                .any(|part| part.starts_with('.'));
            if exact || (under && !hidden) {
                self.items.push(Item::Object {
                    s3,
                    bucket: bucket.to_string(),
                    key,
                });
            }
        }
        Ok(())
    }

    /// How many files were listed.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no file was listed.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Reads the files one by one: `(name, content)`, or the error of the
    /// one that could not be read.
    pub(crate) fn read(&self) -> impl Iterator<Item = Result<(String, Vec<u8>), Error>> + '_ {
        self.items.iter().map(|item| match item {
            Item::Local(path) => std::fs::read(path)
                .map(|bytes| (path.display().to_string(), bytes))
                .map_err(|e| format!("{}: {e}", path.display()).into()),
            Item::Object { s3, bucket, key } => {
                let name = format!("s3://{bucket}/{key}");
                self.clients[*s3].get(key).map(|bytes| (name, bytes))
            }
        })
    }
}

/// Every `.jsonl` file under `p` (or `p` itself if it is a file), sorted.
fn collect(p: &Path, out: &mut Vec<Item>) -> std::io::Result<()> {
    if !p.is_dir() {
        // A missing path fails here, with the OS's words.
        std::fs::metadata(p)?;
        out.push(Item::Local(p.to_path_buf()));
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(p)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = e.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if name.to_string_lossy().ends_with(".jsonl") {
            out.push(Item::Local(path));
        }
    }
    Ok(())
}

/// The lines of one capture file (without their newlines; an empty file
/// has none).
pub(crate) fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    body.split(|&b| b == b'\n')
        .filter(move |_| !body.is_empty())
}
