"""Which API account a database's catalog came from.

A database remembers the base URL and a fingerprint of the access key id it was first synced
with; a sync with another key, or against another host, is another source. A sync from another
source (the demo's fake into a real database, another account's key) would mark the whole
catalog deleted, or trip the delete guard with a message that hides the cause; it is refused
instead, before anything is written. The key itself is never stored: the fingerprint is a
salted hash, enough to tell two keys apart, useless to sign with.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

from sqlalchemy import Connection, delete, select

from catalog.errors import ConfigError
from catalog.runs import utcnow
from catalog.schema import DEFAULT_ACCOUNT, catalog_source

_SALT = b"qianfan-catalog source fingerprint v1\0"


def fingerprint(access_key: str) -> str:
    return hashlib.sha256(_SALT + access_key.encode()).hexdigest()[:16]


def _host(url: str) -> str:
    """The host a base URL names: a port or scheme change (a local fake restarted, a proxy in
    front) is the same source; another host is not."""
    return (urlsplit(url).hostname or url).lower()


def bind(
    conn: Connection,
    base_url: str,
    access_key: str,
    *,
    rebind: bool = False,
    account: str = DEFAULT_ACCOUNT,
) -> None:
    """Remember this source on first use; refuse a different one unless told to rebind.

    Call inside the run's transaction: a refusal writes nothing, a first binding commits with
    the run.
    """
    stored = conn.execute(
        select(catalog_source.c.base_url, catalog_source.c.key_fingerprint).where(
            catalog_source.c.account == account
        )
    ).first()
    print_ = fingerprint(access_key)
    if stored is not None:
        if _host(stored.base_url) == _host(base_url) and stored.key_fingerprint == print_:
            return
        if not rebind:
            whose = "this database holds" if account == DEFAULT_ACCOUNT else (
                f"account {account!r} of this database holds"
            )
            raise ConfigError(
                f"{whose} the catalog of {stored.base_url} (access key "
                f"fingerprint {stored.key_fingerprint}), not of {base_url} (fingerprint "
                f"{print_}): sync into another --database-url, or pass --rebind-source if "
                "this database should follow the new source from now on"
            )
        conn.execute(delete(catalog_source).where(catalog_source.c.account == account))
    conn.execute(
        catalog_source.insert().values(
            account=account, base_url=base_url, key_fingerprint=print_, bound_at=utcnow()
        )
    )
