"""Creating API keys: the key is returned once, only its hash is kept."""

from __future__ import annotations

from octo_appliance.db.security import ApiKey, User
from octo_appliance.security.passwords import generate_api_key, token_hash


def create_api_key(user: User, name: str) -> tuple[ApiKey, str]:
    key = generate_api_key()
    row: ApiKey = ApiKey.create_new(user=user, name=name, key_hash=token_hash(key), prefix=key[:9])
    return row, key
