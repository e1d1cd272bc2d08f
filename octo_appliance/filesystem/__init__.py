"""The file system as the appliance relies on it: durable replacement; a full disk said
clearly."""
