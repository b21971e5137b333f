"""Consumer groups: one module (or small package) each, handlers `event -> effects`."""
