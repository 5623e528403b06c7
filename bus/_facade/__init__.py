"""The seed facade's code; its public names are in :mod:`bus.events`."""
