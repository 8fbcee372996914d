from zlt.cli.app import main

main()
