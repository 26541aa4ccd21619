"""The directory's own identity of an LDAP entry: one string per account, whatever name found it."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

# Asked for with every user search: AD's objectGUID (binary), OpenLDAP's entryUUID (operational,
# so returned only when named).
IDENTITY_ATTRIBUTES = ("objectGUID", "entryUUID")


def account_identity(dn: str, attributes: Mapping[str, Sequence[bytes]]) -> str:
    """The account's id: objectGUID in its canonical form, else entryUUID, else the DN.

    AD stores objectGUID as 16 bytes whose first three groups are little-endian, which is how
    AD tools print it (`uuid.UUID(bytes_le=...)`). A renamed or moved entry keeps its GUID or
    UUID but not its DN, so the DN is only the last resort.
    """
    values = {name.lower(): value for name, value in attributes.items()}
    guid = values.get("objectguid")
    if guid and len(guid[0]) == 16:
        return str(uuid.UUID(bytes_le=bytes(guid[0])))
    entry_uuid = values.get("entryuuid")
    if entry_uuid:
        try:
            return str(uuid.UUID(bytes(entry_uuid[0]).decode("ascii")))
        except (UnicodeDecodeError, ValueError):
            pass
    return dn.lower()
