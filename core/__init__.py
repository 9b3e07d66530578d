"""The ground every Hangar package stands on: database, errors, settings, object store,
secret hashing. Imports no other Hangar package."""
