"""Vector stores behind one port: pgvector (default) and Pinecone."""
