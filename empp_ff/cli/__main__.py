from empp_ff.cli import main

main()
