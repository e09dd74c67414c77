from spkrecon.cli import main

main()
