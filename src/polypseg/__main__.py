from polypseg.cli import main

main()
