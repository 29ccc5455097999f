"""Load a tokenizer.json from any URI (store, local path, s3://) and describe it (`TokenizerRef`).

Training a tokenizer is pack's job (tasks/tokenizer.py); loading one is needed by every stage that reads
token shards (train, select, evaluate, ablation), so it lives here, below them all.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenizers import Tokenizer

from primer.errors import InputError
from primer.store import ArtifactStore, filesystem_for, sha256_bytes


@dataclass
class TokenizerRef:
    uri: str
    sha256: str
    vocab_size: int
    eos_id: int
    eos_token: str
    trained: bool


def tokenizer_ref(tok: Tokenizer, uri: str, eos_token: str, trained: bool) -> TokenizerRef:
    eos_id = tok.token_to_id(eos_token)
    if eos_id is None:
        raise InputError(f"tokenizer {uri}: has no {eos_token!r} token; set tokenizer.eos_token to its "
                         "end-of-document token or train one (leave tokenizer.uri empty)")
    return TokenizerRef(uri=uri, sha256=sha256_bytes(tok.to_str().encode()), vocab_size=tok.get_vocab_size(),
                        eos_id=eos_id, eos_token=eos_token, trained=trained)


def load_tokenizer(store: ArtifactStore, uri: str, eos_token: str) -> tuple[Tokenizer, TokenizerRef]:
    """Load tokenizer.json from any URI (a store URI, a local path, s3://...)."""
    try:
        fs, path = filesystem_for(uri, store.cfg)
        data = fs.cat_file(path)
    except FileNotFoundError:
        raise InputError(f"tokenizer.uri {uri!r}: not found") from None
    except Exception as e:
        raise InputError(f"tokenizer.uri {uri!r}: cannot read ({type(e).__name__}: {str(e)[:160]})") from None
    try:
        tok = Tokenizer.from_str(data.decode("utf-8"))
    except Exception as e:
        raise InputError(f"tokenizer.uri {uri!r}: not a tokenizer.json file ({str(e)[:160]})") from None
    return tok, tokenizer_ref(tok, uri, eos_token, trained=False)
